"""Genomics: streaming VCF ingestion, annotations, sample linkage and the genomic marts."""
import json
import shutil
import threading
from pathlib import Path

import cyvcf2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import medlake.ingest as engine
from assets.genomics import native
from assets.genomics import vcf as vcfmod
from assets.genomics.annotations import header_formats
from assets.genomics.linkage import sample_linkage
from assets.genomics.vcf import VCF, stream_vcf, variant_id
from medlake import lake
from medlake.ingest import ingest

# cyvcf2's test folder: these two are broken on purpose; everything else must land.
QUARANTINED = {"empty.vcf": "empty or not VCF", "test-invalid-header.vcf": "empty sample name"}


def _count(table: str, where: str = "true") -> int:
    return lake.read(table, f"SELECT count(*) FROM t WHERE {where}").column(0)[0].as_py()


def _expected(files: list[Path]) -> tuple[set, set]:
    """What cyvcf2 reads: distinct variant ids and (sample, variant id) pairs."""
    sites, calls = set(), set()
    for f in files:
        reader = cyvcf2.VCF(str(f))
        for r in reader:
            vid = variant_id(r.CHROM, r.POS, r.REF, r.ALT)
            sites.add(vid)
            calls.update((s, vid) for s in reader.samples)
        reader.close()
    return sites, calls


def test_every_shared_vcf_lands_or_is_quarantined_and_counts_match_cyvcf2(home, shared):
    src = shared / "data" / "vcf"
    files = sorted(p for p in src.iterdir() if p.name.endswith((".vcf", ".vcf.gz")))
    s = ingest(VCF, src, "b1")
    assert s.files_seen == len(files)
    log = {Path(r["source_uri"]).name: r for r in lake.read("bronze.ingest_log").to_pylist()}
    errors = {Path(r["source_uri"]).name: r["error"] for r in lake.read("bronze.quarantine").to_pylist()}
    for f in files:  # each file's outcome, by name
        if f.name in QUARANTINED:
            assert log[f.name]["status"] == "quarantined"
            assert QUARANTINED[f.name] in errors[f.name] and errors[f.name].endswith(".")
        else:
            assert log[f.name]["status"] == "ingested", (f.name, errors.get(f.name))
    sites, calls = _expected([f for f in files if f.name not in QUARANTINED])
    assert _count("bronze.vcf_variants") == len(sites)
    assert _count("bronze.vcf_genotypes") == len(calls)
    got = lake.read("bronze.vcf_genotypes", "SELECT DISTINCT sample_id, variant_id FROM t").to_pylist()
    assert {(r["sample_id"], r["variant_id"]) for r in got} == calls
    # Haploid calls keep one allele; a missing allele is null, not -1.
    hemi = lake.read("bronze.vcf_genotypes", "SELECT gt, alleles FROM t WHERE source_uri LIKE '%test-haploidX.vcf'")
    assert any(len(a) == 1 for a in hemi.column("alleles").to_pylist())
    assert all(-1 not in (a or []) for a in lake.read("bronze.vcf_genotypes", "SELECT alleles FROM t")
               .column(0).to_pylist())
    assert set(lake.read("bronze.vcf_annotations", "SELECT DISTINCT source FROM t").column(0).to_pylist()) \
        >= {"CSQ", "ANN", "EFF"}

    versions = {t: lake.version(t) for t in ("bronze.vcf_variants", "bronze.vcf_genotypes")}
    again = ingest(VCF, src, "b2")
    assert again.files_skipped == len(files) and again.files_ingested == 0  # quarantined are logged too
    assert {t: lake.version(t) for t in versions} == versions


def test_annotation_fields_come_from_the_header():
    formats = {f.key: f for f in header_formats({
        "CSQ": '"Consequence annotations from Ensembl VEP. Format: Consequence|SYMBOL|Feature|Allele"',
        "ANN": "\"Functional annotations: 'Allele | Annotation | Annotation_Impact | Gene_Name | "
               "Gene_ID | Feature_Type | Feature_ID | Transcript_BioType | Rank | HGVS.c | HGVS.p' \"",
        "EFF": "\"Predicted effects. Format: 'Effect ( Effect_Impact | Gene_Name | Transcript "
               "[ | ERRORS | WARNINGS ] )' \"",
        "DP": '"Depth"'})}
    assert set(formats) == {"CSQ", "ANN", "EFF"}
    # VEP in a non-default order: columns follow the header, not a fixed layout.
    csq = formats["CSQ"].parse("missense_variant|BRCA1|ENST1|T,intron_variant|BRCA1|ENST2|T")
    assert [(r["consequence"], r["gene"], r["transcript"], r["allele"], r["n"]) for r in csq] == [
        ("missense_variant", "BRCA1", "ENST1", "T", 0), ("intron_variant", "BRCA1", "ENST2", "T", 1)]
    ann = formats["ANN"].parse("A|stop_gained|HIGH|TP53|ENSG1|transcript|ENST9|protein_coding|5/11|c.1A>T|p.Lys1*")
    assert ann[0] | {"fields": None} == {
        "allele": "A", "consequence": "stop_gained", "impact": "HIGH", "gene": "TP53", "gene_id": "ENSG1",
        "transcript": "ENST9", "biotype": "protein_coding", "hgvs_c": "c.1A>T", "hgvs_p": "p.Lys1*",
        "source": "ANN", "n": 0, "fields": None}
    assert json.loads(ann[0]["fields"])["Rank"] == "5/11"
    eff = formats["EFF"].parse("DOWNSTREAM(MODIFIER|FAM138A|ENST3)")
    assert (eff[0]["consequence"], eff[0]["impact"], eff[0]["gene"], eff[0]["transcript"]) == \
        ("DOWNSTREAM", "MODIFIER", "FAM138A", "ENST3")


def test_stream_yields_bounded_pieces_that_add_up_to_the_file(shared):
    path = shared / "data" / "vcf" / "test.vcf.gz"  # 189 samples x 115 sites
    samples = len(cyvcf2.VCF(str(path)).samples)
    pieces = list(stream_vcf(path, batch_genotypes=2_000))
    sizes = [len(p.rows[vcfmod.GENOTYPES.name]) for p in pieces]
    assert len(pieces) > 5 and not any(p.problems for p in pieces)
    assert max(sizes) < 2_000 + samples  # a piece closes at the first site past the limit
    whole = list(stream_vcf(path))
    assert len(whole) == 1
    assert sum(sizes) == len(whole[0].rows[vcfmod.GENOTYPES.name]) == 115 * samples


def test_a_files_last_calls_travel_with_its_last_sites(shared):
    # Even when the calls fill their last piece exactly at the last record: the file's
    # end is then one flush, written after the parse, not a flush of calls and then
    # one of sites.
    path = shared / "data" / "vcf" / "test.vcf.gz"  # 189 samples x 115 sites
    pieces = list(stream_vcf(path, batch_genotypes=23 * 189))
    assert [len(p.rows.get(vcfmod.GENOTYPES.name, ())) for p in pieces] == [23 * 189] * 5
    assert set(pieces[-1].rows) == {vcfmod.GENOTYPES.name, vcfmod.VARIANTS.name, vcfmod.ANNOTATIONS.name}


def _write(path: Path, records: list[str], samples=("S1", "S2")) -> Path:
    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *samples])]
    path.write_text("\n".join(header + records) + "\n")
    return path


def _record(pos: int, gts=("0/1", "1/1")) -> str:
    return "\t".join(["chr1", str(pos), ".", "A", "G", "50", "PASS", ".", "GT", *gts])


def test_streamed_file_is_merged_piece_by_piece(home, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "big.vcf", [_record(100 + i) for i in range(40)])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    s = ingest(VCF, d, "b")
    assert s.files_ingested == 1
    assert _count("bronze.vcf_genotypes") == 80 and _count("bronze.vcf_variants") == 40
    assert lake.version("bronze.vcf_genotypes") >= 3  # merged in several commits, not at the end


@pytest.mark.parametrize("idle", [True, False], ids=["writer-idle", "writer-busy"])
def test_a_streamed_file_flushes_early_only_while_the_writer_is_idle(home, tmp_path, monkeypatch, idle):
    """Below `flush_rows`, a piece is flushed at `flush_idle_rows` only when no write is in
    flight: the writer starts on a large file's first pieces instead of waiting for a
    full flush. Either way the same rows land."""
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "big.vcf", [_record(100 + i) for i in range(40)])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 1_000)  # never reached: only idle flushes split the file
    monkeypatch.setattr(VCF, "flush_idle_rows", 20)
    commits = []
    real_merge = lake.merge

    def counted(table, rows, *args, **kwargs):
        if table == vcfmod.GENOTYPES.name:
            commits.append(rows.num_rows)
        return real_merge(table, rows, *args, **kwargs)

    # Idle or busy on demand: an idle writer is one whose write has finished.
    monkeypatch.setattr(engine._Writer, "idle", (lambda w: w.wait() or True) if idle else (lambda w: False))
    monkeypatch.setattr(engine.lake, "merge", counted)
    assert ingest(VCF, d, "b").files_ingested == 1
    assert commits == ([20, 20, 20, 20] if idle else [80])
    got = lake.read("bronze.vcf_genotypes", "SELECT count(*), count(DISTINCT (sample_id, variant_id)) FROM t")
    assert list(got.to_pylist()[0].values()) == [80, 80]
    assert _count("bronze.vcf_variants") == 40


def test_the_writer_is_idle_only_without_a_write_in_flight():
    release = threading.Event()
    with engine._Writer() as writer:
        assert writer.idle()
        writer.submit(release.wait)
        assert not writer.idle()
        release.set()
        writer.wait()
        assert writer.idle()


def test_provenance_of_a_pieced_file_is_written_as_one_dictionary_value(home, tmp_path, monkeypatch):
    # A file's pieces share their provenance: a Parquet dictionary of one value. A
    # dictionary repeating it per piece made Parquet spell the columns out (half of
    # each genotype file was its own sha256, uri and batch id).
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "big.vcf", [_record(100 + i) for i in range(40)])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    assert ingest(VCF, d, "b").files_ingested == 1
    files = lake.open_table("bronze.vcf_genotypes").file_uris()
    assert files
    for uri in files:
        meta = pq.read_metadata(uri.removeprefix("file://"))
        columns = {meta.schema.column(j).path: meta.row_group(0).column(j) for j in range(meta.num_columns)}
        for name in ("source_uri", "source_sha256", "batch_id"):
            assert "RLE_DICTIONARY" in columns[name].encodings, (name, columns[name].encodings)
    assert lake.read("bronze.vcf_genotypes", "SELECT count(DISTINCT source_sha256) FROM t").column(0)[0].as_py() == 1


def test_bad_record_after_merged_pieces_quarantines_the_whole_file(home, tmp_path, monkeypatch):
    d = tmp_path / "in"
    d.mkdir()
    records = [_record(100 + i) for i in range(30)] + ["chr1\t500\t.\tA"]
    _write(d / "late-error.vcf", records)
    _write(d / "good.vcf", [_record(100), _record(900)])  # shares chr1:100 with the bad file
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    s = ingest(VCF, d, "b")
    assert s.files_quarantined == 1 and s.files_ingested == 1
    assert s.rows["bronze.vcf_genotypes"] == 4  # net of the bad file's deleted rows
    # Nothing of the bad file is left half-landed; the good file is whole.
    bad_uri = (d / "late-error.vcf").resolve().as_uri()
    for table in ("bronze.vcf_variants", "bronze.vcf_genotypes"):
        assert _count(table, f"source_uri = '{bad_uri}'") == 0
    assert sorted(lake.read("bronze.vcf_variants", "SELECT pos FROM t").column(0).to_pylist()) == [100, 900]
    error = lake.read("bronze.quarantine").to_pylist()[0]["error"]
    assert error.startswith("Line 35 (record 31) has 4 tab-separated columns")


def test_run_killed_mid_file_then_rerun_leaves_no_duplicates(home, tmp_path, monkeypatch):
    """Pieces of a new file are appended, not merged; a run killed after some of them
    landed leaves rows of an unlogged file. The next run parses the file again and, since
    those keys are now stored, MERGEs instead of appending: every key lands once."""
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "big.vcf", [_record(100 + i) for i in range(40)])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    real_merge, writes = lake.merge, []

    def killed_after_two(table, rows, *args, **kwargs):
        if table == vcfmod.GENOTYPES.name:
            writes.append(rows.num_rows)
            if len(writes) > 2:
                raise KeyboardInterrupt("killed")
        return real_merge(table, rows, *args, **kwargs)

    monkeypatch.setattr(engine.lake, "merge", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        ingest(VCF, d, "crashed")
    assert 0 < _count("bronze.vcf_genotypes") < 80  # half-landed, file not logged

    monkeypatch.setattr(engine.lake, "merge", real_merge)
    s = ingest(VCF, d, "retry")
    assert s.files_ingested == 1
    got = lake.read("bronze.vcf_genotypes", "SELECT count(*), count(DISTINCT (sample_id, variant_id)), "
                                            "count(*) FILTER (WHERE batch_id IN ('crashed', 'retry')) "
                                            "FROM t").to_pylist()[0]
    assert list(got.values()) == [80, 80, 80]
    assert _count("bronze.vcf_variants") == 40
    v = lake.version("bronze.vcf_genotypes")
    assert ingest(VCF, d, "again").files_skipped == 1 and lake.version("bronze.vcf_genotypes") == v


@pytest.mark.parametrize("repeat", [105, 119], ids=["earlier-piece", "same-position"])
def test_a_repeated_record_lands_once_even_across_pieces(home, tmp_path, monkeypatch, repeat):
    """Sorted files with new ids let the engine skip its duplicate checks; a record that
    repeats an earlier one (out of order, or at the same position) must still land once."""
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "dup.vcf", [_record(100 + i) for i in range(20)] + [_record(repeat, ("1/1", "0/0"))])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    assert ingest(VCF, d, "b").files_ingested == 1
    got = lake.read("bronze.vcf_genotypes", "SELECT count(*), count(DISTINCT (sample_id, variant_id)) FROM t")
    assert list(got.to_pylist()[0].values()) == [40, 40]
    assert _count("bronze.vcf_variants") == 20


def test_a_later_file_with_stored_keys_is_merged_not_appended(home, tmp_path):
    """Only a flush whose keys are all new is appended; one that shares a stored key is
    MERGEd, so the key stays single (and keeps the stored row, as MERGE does)."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    _write(first / "a.vcf", [_record(100), _record(200)])
    _write(second / "b.vcf", [_record(200, ("1/1", "0/0")), _record(300)])
    assert not lake.holds_any(vcfmod.GENOTYPES.name, pa.table({"chrom": ["chr1"], "sample_id": ["S1"],
                                                              "variant_id": ["chr1:200:A:G"]}), vcfmod.GENOTYPES.keys)
    ingest(VCF, first, "b1")
    probe = pa.table({"chrom": ["chr1", "chr1"], "sample_id": ["S1", "S9"], "variant_id": ["chr1:200:A:G"] * 2})
    assert lake.holds_any(vcfmod.GENOTYPES.name, probe, vcfmod.GENOTYPES.keys)
    assert not lake.holds_any(vcfmod.GENOTYPES.name, probe.slice(1), vcfmod.GENOTYPES.keys)
    assert not lake.holds_any(vcfmod.GENOTYPES.name, probe.set_column(0, "chrom", pa.array(["chr2"] * 2)),
                              vcfmod.GENOTYPES.keys)
    ingest(VCF, second, "b2")
    got = lake.read("bronze.vcf_genotypes", "SELECT count(*), count(DISTINCT (sample_id, variant_id)) FROM t")
    assert list(got.to_pylist()[0].values()) == [6, 6]
    kept = lake.read("bronze.vcf_genotypes", "SELECT gt, batch_id FROM t WHERE variant_id = 'chr1:200:A:G' "
                                             "AND sample_id = 'S1'").to_pylist()
    assert kept == [{"gt": "0/1", "batch_id": "b1"}]


def test_unmapped_samples_are_counted_not_joined(home, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    _write(d / "x.vcf", [_record(100, ("0/1", "1/1", "0/0"))], samples=("LAB-1", "LAB-2", "LAB-3"))
    (d / "manifest.csv").write_text("sample_id,mrn\nLAB-1,MRN1\n")
    ingest(VCF, d, "b")
    link = sample_linkage()
    assert (link.samples, link.linked, link.unmapped) == (3, 1, ["LAB-2", "LAB-3"])


# ------------------------------------------------------------- the demo lake


def test_generated_samples_all_link_to_people(demo):
    g = json.loads((demo / "generated.json").read_text())
    link = sample_linkage()
    assert link.samples == g["samples"] > 0
    assert link.unmapped == [] and link.mrns_without_patient == 0
    people = set(lake.read("silver.patient", "SELECT person_key FROM t").column(0).to_pylist())
    carriers = set(lake.read("silver.genotype", "SELECT DISTINCT person_key FROM t").column(0).to_pylist())
    assert len(carriers) == g["samples"] and carriers <= people
    genotype_columns = lake.read("silver.genotype", "SELECT * FROM t LIMIT 1").column_names
    assert "sample_id" not in genotype_columns and "mrn" not in genotype_columns


def test_generated_vcfs_outcomes(demo):
    log = {Path(r["source_uri"]).name: r for r in lake.read(
        "bronze.ingest_log", "SELECT * FROM t WHERE modality = 'vcf'").to_pylist()}
    assert log["rerun.vcf"]["status"] == "ingested" and log["rerun.vcf"]["rows"] == 0
    assert log["panel.snpeff.vcf"]["status"] == "ingested"
    assert log["bad-malformed.vcf"]["status"] == "quarantined"
    q = lake.read("bronze.quarantine", "SELECT error FROM t WHERE source_uri LIKE '%bad-malformed.vcf'")
    assert q.column(0)[0].as_py().startswith("Line ")


def test_silver_variant_splits_trims_and_annotates(demo):
    rows = lake.read("silver.variant").to_pylist()
    by_id = {r["variant_id"]: r for r in rows}
    assert all("," not in r["alt"] for r in rows)
    # The panel's tri-allelic MLH1 site: three rows, each with its own ClinVar call and ANN.
    tri = [r for r in rows if r["gene"] == "MLH1" and r["from_multiallelic"]]
    assert sorted(r["alt"] for r in tri) == ["A", "G", "T"]
    assert len({r["clinical_significance"] for r in tri}) == 3
    assert all(r["annotation_source"] == "ANN" and r["consequence"] for r in tri)
    # REF ATG ALT A,ATGTG: the second allele trims to the insertion A>ATG.
    msh2 = sorted((r["ref"], r["alt"], r["variant_type"]) for r in rows if r["gene"] == "MSH2"
                  and r["from_multiallelic"])
    assert msh2 == [("A", "ATG", "insertion"), ("ATG", "A", "deletion")]
    # CAG>CTG trims to A>T one base on.
    apc = [r for r in rows if r["gene"] == "APC" and r["variant_type"] == "MNV" or
           (r["gene"] == "APC" and r["annotation_source"] == "ANN")]
    assert [(r["ref"], r["alt"], r["variant_type"]) for r in apc] == [("A", "T", "SNV")]
    site = lake.read("bronze.vcf_variants", "SELECT pos FROM t WHERE ref = 'CAG'").column(0)[0].as_py()
    assert apc[0]["pos"] == site + 1 and apc[0]["variant_id"] in by_id
    assert all(r["batch_id"] and r["source_sha256"] for r in rows)


def test_variant_occurrence_and_patient_360_agree(demo):
    occ = lake.read("gold.variant_occurrence").to_pylist()
    assert occ and all(r["alt_allele_count"] > 0 and r["source_sha256"] for r in occ)
    pathogenic = {}
    for r in occ:
        if r["is_pathogenic"]:
            pathogenic.setdefault(r["person_key"], set()).add(r["target_gene1_symbol"])
    p360 = {r["person_key"]: r for r in lake.read("gold.patient_360").to_pylist()}
    for person, genes in pathogenic.items():
        assert set(p360[person]["pathogenic_genes"]) == genes
    carried = {}
    for r in occ:
        carried[r["person_key"]] = carried.get(r["person_key"], 0) + 1
    assert {k: v["variants_carried"] for k, v in p360.items() if v["has_genomics"]} == \
        {k: carried.get(k, 0) for k, v in p360.items() if v["has_genomics"]}
    # Breast-cancer patients carry a pathogenic BRCA variant in the generated cohort.
    cancer = [r for r in p360.values() if any("breast" in (c or "").lower() for c in r["condition_names"])]
    assert all({"BRCA1", "BRCA2"} & set(r["pathogenic_genes"]) for r in cancer if r["has_genomics"])


@pytest.mark.parametrize("name", ["test.snpeff.vcf"])
def test_snpeff_eff_annotations_land_structured(home, shared, tmp_path, name):
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(shared / "data" / "vcf" / name, d / name)
    ingest(VCF, d, "b")
    got = lake.read("bronze.vcf_annotations", "SELECT source, consequence, impact, gene, transcript FROM t")
    rows = got.to_pylist()
    assert rows and all(r["source"] == "EFF" and r["consequence"] and r["impact"] for r in rows)
    assert sum(1 for r in rows if r["transcript"] and r["transcript"].startswith("ENST")) > len(rows) / 2


def test_genotype_text_allele_indexes_and_depths_round_trip(home, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    calls = ["0/1:7:3,4", "1|0:9:5,4", "./.:.:.", "2:12:0,1,11", "0/0/1:30:20,10,0", ".|1:5:.,5"]
    header = ["##fileformat=VCFv4.3", "##contig=<ID=chrX,length=1000000>",
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
              '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                         *[f"S{i}" for i in range(len(calls))]])]
    line = "\t".join(["chrX", "10", ".", "A", "G,T", "50", "PASS", ".", "GT:DP:AD", *calls])
    (d / "x.vcf").write_text("\n".join(header + [line]) + "\n")
    ingest(VCF, d, "b")
    got = {r["sample_id"]: r for r in lake.read("bronze.vcf_genotypes").to_pylist()}
    assert [got[f"S{i}"]["gt"] for i in range(len(calls))] == [c.split(":")[0] for c in calls]
    assert got["S2"]["alleles"] == [None, None] and got["S2"]["dp"] is None
    assert got["S3"]["alleles"] == [2] and got["S3"]["ad"] == [0, 1, 11]
    assert got["S4"]["alleles"] == [0, 0, 1] and got["S4"]["alt_count"] == 1
    assert got["S1"]["phased"] and not got["S0"]["phased"]
    assert got["S5"]["ad"] == [None, 5]


def test_bcf_lands_like_the_vcf_it_was_written_from(home, shared, tmp_path):
    src = shared / "data" / "vcf" / "test.snpeff.vcf"
    d = tmp_path / "in"
    d.mkdir()
    reader = cyvcf2.VCF(str(src))
    writer = cyvcf2.Writer(str(d / "x.bcf"), reader, mode="wb")
    for record in reader:
        writer.write_record(record)
    writer.close()
    reader.close()
    s = ingest(VCF, d, "b")
    assert s.files_ingested == 1
    sites, calls = _expected([src])
    assert _count("bronze.vcf_variants") == len(sites) and _count("bronze.vcf_genotypes") == len(calls)
    assert _count("bronze.vcf_annotations") > 0


def _reference_calls(path: Path) -> dict[tuple[str, str], dict]:
    """Each call as cyvcf2 gives it, decoded one call at a time in plain Python: what the
    batched numpy decoding must reproduce."""
    end, missing = -2147483647, -2147483648

    def ints(values) -> list:
        out = []
        for v in values:
            v = v.item() if hasattr(v, "item") else v
            if isinstance(v, (bytes, str)):
                v = v.decode() if isinstance(v, bytes) else v
                v = int(v) if v.lstrip("-").isdigit() else missing
            elif isinstance(v, float):
                v = missing if v != v else int(v)
            if v != end:  # htslib's padding after a shorter vector
                out.append(None if v < 0 else int(v))  # -1 or htslib's missing: null
        return out

    out = {}
    reader = cyvcf2.VCF(str(path))
    for r in reader:
        vid = variant_id(r.CHROM, r.POS, r.REF, r.ALT)
        fmt = r.FORMAT or []
        gts = r.genotype.array() if "GT" in fmt else None
        fields = {k: r.format(k) if k in fmt else None for k in ("DP", "GQ", "AD")}
        for i, sample in enumerate(reader.samples):
            alleles = None
            if gts is not None:
                kept = [int(a) for a in gts[i][:-1] if a != -2]
                alleles = [None if a == -1 else a for a in kept] or None
            gt = None if not alleles else ("|" if gts[i][-1] else "/").join(
                "." if a is None else str(a) for a in alleles)
            row = dict(gt=gt, alleles=alleles, phased=len(alleles or []) > 1 and bool(gts[i][-1]),
                       alt_count=sum(1 for a in alleles or [] if a), ad=None)
            for key in ("DP", "GQ", "AD"):
                values = fields[key][i] if fields[key] is not None else []
                if getattr(fields[key], "dtype", None) is not None and fields[key].dtype.kind in "US":
                    values = str(values if np.ndim(values) == 0 else values[0]).split(",")
                got = ints(values)
                row[key.lower()] = (got or None) if key == "AD" else (got[0] if got else None)
            out[(sample, vid)] = row
    reader.close()
    return out


@pytest.mark.parametrize("decoder", ["c", "numpy"])
@pytest.mark.parametrize("batch", [None, 1_000], ids=["whole-files", "small-batches"])
def test_every_call_decodes_as_cyvcf2_reads_it_one_at_a_time(home, shared, monkeypatch, batch, decoder):
    """The batched decoding, by the C decoder and by numpy (mixed ploidy, padding,
    missing values, strings where numbers belong), against a per-call reading of the
    same files, on every value."""
    src = shared / "data" / "vcf"
    files = sorted(p for p in src.iterdir() if p.name.endswith((".vcf", ".vcf.gz"))
                   and p.name not in QUARANTINED)
    if batch:
        monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", batch)
    if decoder == "numpy":
        monkeypatch.setattr(native, "_calls", None)
    ingest(VCF, src, "b")
    columns = ["gt", "alleles", "phased", "alt_count", "dp", "gq", "ad"]
    got = {(r.pop("sample_id"), r.pop("variant_id")): r for r in lake.read(
        "bronze.vcf_genotypes", f"SELECT sample_id, variant_id, {', '.join(columns)} FROM t").to_pylist()}
    want, seen = {}, {}
    for f in files:
        for key, row in _reference_calls(f).items():
            want[key], seen[key] = row, seen.get(key, 0) + 1
    assert set(got) == set(want)
    # A call repeated across files or records lands once, as whichever came first: compare
    # the calls that appear once.
    single = [key for key, n in seen.items() if n == 1]
    assert len(single) > 20_000
    wrong = [(key, got[key], want[key]) for key in single if got[key] != want[key]]
    assert not wrong, (len(wrong), *wrong[:5])


@pytest.mark.parametrize("writers", ["1", "4"])
def test_rows_a_killed_run_left_of_a_bad_file_go_and_files_that_relied_on_them_land_again(
        home, tmp_path, monkeypatch, writers):
    """A run killed while a big VCF with a bad last record was landing leaves some of its
    rows. Another file sharing those sites lands before the rerun: its MERGE finds them
    stored and inserts nothing. The rerun finds the bad record, deletes every row of the
    bad file (left by the killed run too, with one writer or with four configured), and
    lands the other file again, so it is whole."""
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir(), good.mkdir()
    _write(bad / "late-error.vcf", [_record(100 + i) for i in range(30)] + ["chr1\t500\t.\tA"])
    _write(good / "good.vcf", [_record(100 + i) for i in range(30)])
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    real_merge = lake.merge

    def killed_at_second_write(table, rows, *args, **kwargs):
        if table == vcfmod.GENOTYPES.name and lake.version(table) >= 1:
            raise KeyboardInterrupt("killed")
        return real_merge(table, rows, *args, **kwargs)

    monkeypatch.setattr(engine.lake, "merge", killed_at_second_write)
    with pytest.raises(KeyboardInterrupt):
        ingest(VCF, bad, "killed")
    monkeypatch.setattr(engine.lake, "merge", real_merge)
    left = _count("bronze.vcf_genotypes")
    assert left == 20  # the killed run's first flush of the bad file: 10 sites x 2 samples

    assert ingest(VCF, good, "other").files_ingested == 1
    assert _count("bronze.vcf_genotypes") == 60  # ...of which `left` are the bad file's

    monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", writers)
    rerun = ingest(VCF, bad, "rerun")
    good_uri, bad_uri = ((d / f).resolve().as_uri() for d, f in ((good, "good.vcf"), (bad, "late-error.vcf")))
    assert rerun.files_quarantined == 1 and rerun.unlogged == [good_uri] and rerun.files_relanded == 1
    assert rerun.rows["bronze.vcf_genotypes"] == left  # what the delete took, landed again
    assert _count("bronze.vcf_genotypes", f"source_uri = '{bad_uri}'") == 0
    assert _count("bronze.vcf_genotypes") == 60 and _count("bronze.vcf_variants") == 30
    log = lake.read("bronze.ingest_log", "SELECT source_uri, status, batch_id FROM t ORDER BY 1").to_pylist()
    assert log == [{"source_uri": bad_uri, "status": "quarantined", "batch_id": "rerun"},
                   {"source_uri": good_uri, "status": "ingested", "batch_id": "rerun"}]
    v = lake.version("bronze.vcf_genotypes")
    assert ingest(VCF, good, "once-more").files_skipped == 1 and lake.version("bronze.vcf_genotypes") == v
