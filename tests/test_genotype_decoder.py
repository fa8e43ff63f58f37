"""The C decoder of genotype calls (assets/genomics/_calls.c) against the numpy path it
stands in for: the same Arrow columns, value for value, on every file, and the numpy
path wherever the decoder cannot be trusted."""
import logging
from pathlib import Path

import cyvcf2
import pyarrow as pa
import pytest

from assets.genomics import native
from assets.genomics import vcf as vcfmod
from assets.genomics.vcf import stream_vcf

FORMATS = [
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=DP,Number=1,Type=Integer,Description="Depth">',
    '##FORMAT=<ID=GQ,Number=1,Type=Float,Description="Quality, a float as older GATK declares it">',
    '##FORMAT=<ID=AD,Number=R,Type=Integer,Description="Allelic depths">',
    '##FORMAT=<ID=XS,Number=1,Type=String,Description="A field the decoder skips">',
]
MANY_ALTS = ",".join(f"<A{i}>" for i in range(1, 71))
# Mixed ploidy in one site and across sites, missing calls and fields, a sample shorter
# than FORMAT, GT not first, GT absent, float GQ (fractions, negative, missing), an
# allele index past what a GT code holds, ploidy 11, an unknown String field.
RECORDS = [
    ("1", 10, "A", "C,G", "GT:DP:AD:GQ", ["0/1:5:1,2,3:12.7", "1|2:.:.:.", ".:7", "0"]),
    ("1", 20, "A", "C", "GT:DP", ["0/1/1:300", "./.:.", ".|1:40000", "1"]),
    ("1", 30, "A", "C", "DP:GT", ["3:0/0", "4", ".", "5:1/1"]),
    ("1", 40, "A", "C", "GQ:AD", ["12.7:3,4", ".:.", "99.0:1", "-1.5:0,0"]),
    ("1", 50, "A", MANY_ALTS, "GT:AD", ["0/65:1", "65|3:.", "./.:.", "0/0:9"]),
    ("1", 60, "A", "C", "GT", ["0/0/0/0/0/0/0/0/0/0/1", "0/1", "1", "./."]),
    ("2", 70, "A", "C", "GT:XS:DP", ["0/1:a:1", "1/1:bb:2", "0|0:.:3", "./.:ccc:."]),
]


def _write(path: Path, records=RECORDS, formats=FORMATS) -> Path:
    header = ["##fileformat=VCFv4.2", "##contig=<ID=1>", "##contig=<ID=2>", *formats,
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                         "S1", "S2", "S3", "S4"])]
    lines = ["\t".join([c, str(p), ".", r, a, ".", "PASS", ".", f, *calls]) for c, p, r, a, f, calls in records]
    path.write_text("\n".join(header + lines) + "\n")
    return path


def _calls(path: Path, decoder: bool, monkeypatch, **batches) -> tuple[pa.Table | None, set[bool]]:
    """The genotype table of `path` as the engine's flushes build it (None: no calls),
    and which paths (True: the C decoder) its pieces took."""
    with monkeypatch.context() as m:
        if not decoder:
            m.setattr(native, "_calls", None)
        pieces = list(stream_vcf(path, **batches))
    assert not any(p.fatal for p in pieces)
    calls = [p.rows[vcfmod.GENOTYPES.name] for p in pieces if vcfmod.GENOTYPES.name in p.rows]
    return (vcfmod._Calls.arrow(calls) if calls else None), {bool(c.records) for c in calls}


def _assert_same(a: pa.Table, b: pa.Table) -> None:
    # Values, not chunks: a flush of C and numpy pieces is two chunks with a dictionary each.
    assert a.schema == b.schema
    for name in a.column_names:
        assert a.column(name).to_pylist() == b.column(name).to_pylist(), name


def test_the_decoder_is_built_and_used_here():
    # make install builds it wherever a C compiler is (CI too); without it every VCF is
    # decoded the slower numpy way, which the benchmark would show only as a number.
    assert native.unavailable() is None


@pytest.mark.parametrize("batches", [{}, {"batch_genotypes": 5, "batch_sites": 3}], ids=["one-piece", "pieces"])
def test_edge_cases_decode_as_the_numpy_path_does(tmp_path, monkeypatch, batches):
    path = _write(tmp_path / "edge.vcf")
    c, paths = _calls(path, True, monkeypatch, **batches)
    numpy, numpy_paths = _calls(path, False, monkeypatch, **batches)
    assert paths == {True} and numpy_paths == {False}
    _assert_same(c, numpy)
    rows = {(r["sample_id"], r["variant_id"].split(":")[1]): r for r in c.to_pylist()}
    assert rows[("S1", "40")]["gq"] == 12 and rows[("S4", "40")]["gq"] is None  # -1.5: null
    assert rows[("S1", "50")]["gt"] == "0/65" and rows[("S2", "50")]["gt"] == "65|3"
    assert rows[("S1", "60")]["alleles"] == [0] * 10 + [1] and rows[("S3", "60")]["gt"] == "1"
    assert rows[("S2", "30")]["gt"] == "." and rows[("S2", "30")]["alleles"] == [None]  # GT left out


def test_every_shared_vcf_decodes_as_the_numpy_path_does(shared, monkeypatch):
    src = shared / "data" / "vcf"
    files = sorted(p for p in src.iterdir() if p.name.endswith((".vcf", ".vcf.gz"))
                   and p.name not in ("empty.vcf", "test-invalid-header.vcf"))
    took = set()
    for path in files:
        for batches in ({}, {"batch_genotypes": 700, "batch_sites": 50}):
            numpy, _ = _calls(path, False, monkeypatch, **batches)
            c, paths = _calls(path, True, monkeypatch, **batches)
            if numpy is None:  # a file without samples
                assert c is None
                continue
            _assert_same(c, numpy)
            took |= paths
    assert took == {True, False}  # one file has String-typed fields: the numpy path


def test_a_record_the_decoder_cannot_take_turns_its_piece_to_numpy(tmp_path, monkeypatch):
    # DP undeclared: htslib types it String from the record that first has it on.
    formats = [f for f in FORMATS if "ID=DP" not in f]
    records = [("1", 10 + i, "A", "C", "GT", ["0/1", "1/1", "0/0", "./."]) for i in range(3)]
    records += [("1", 20 + i, "A", "C", "GT:DP", ["0/1:3", "1/1:4", "0|0:.", "./.:7"]) for i in range(3)]
    path = _write(tmp_path / "mixed.vcf", records, formats)
    c, paths = _calls(path, True, monkeypatch, batch_genotypes=12)
    numpy, _ = _calls(path, False, monkeypatch, batch_genotypes=12)
    assert paths == {True, False}  # the first piece decoded in C, the second with numpy
    _assert_same(c, numpy)
    assert c.column("dp").to_pylist()[-4:] == [3, 4, None, 7]


def test_an_unchecked_cyvcf2_release_falls_back_to_numpy_and_says_so(tmp_path, monkeypatch, caplog):
    path = _write(tmp_path / "edge.vcf")
    monkeypatch.setattr(native, "ACCEPTED_CYVCF2", ("0.0.0",))
    with caplog.at_level(logging.WARNING, logger=native.__name__):
        c, paths = _calls(path, True, monkeypatch)
    assert paths == {False}
    assert "not a release the decoder was checked against" in caplog.text
    numpy, _ = _calls(path, False, monkeypatch)
    _assert_same(c, numpy)


@pytest.mark.parametrize("name", ["test-hemi.vcf", "o.vcf.gz", "test.snpeff.vcf"])
def test_bcf_input_decodes_as_the_numpy_path_does(shared, tmp_path, monkeypatch, name):
    # BCF's sample block comes from the file as written, not from htslib's VCF parser.
    reader = cyvcf2.VCF(str(shared / "data" / "vcf" / name))
    path = tmp_path / "x.bcf"
    writer = cyvcf2.Writer(str(path), reader, mode="wb")
    for record in reader:
        writer.write_record(record)
    writer.close()
    reader.close()
    c, paths = _calls(path, True, monkeypatch)
    numpy, _ = _calls(path, False, monkeypatch)
    assert paths == {True}
    _assert_same(c, numpy)
