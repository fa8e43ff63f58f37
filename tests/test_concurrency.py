"""Parallel bronze writers (MEDLAKE_BRONZE_WRITERS > 1): what delta-rs's conflict checker
guarantees, the retries in lake.merge that rely on it, and four real ingest processes
writing one lake at once, on batches that share keys and files."""
import gzip
import uuid

import duckdb
import orjson
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError

from medlake import lake, parallel, verify
from medlake.config import get_settings

LONG = "file:///tmp/a-long-common-prefix-longer-than-delta-rs-string-statistics/landing/fhir/"


def _merge(dt: DeltaTable, rows: pa.Table, keys: list[str]) -> None:
    """The MERGE lake.merge runs, on a handle that may be stale."""
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    (dt.merge(rows, predicate=on, source_alias="s", target_alias="t", streamed_exec=False)
     .when_not_matched_insert_all().execute())


def _stored_twice(uri: str, keys: list[str]) -> int:
    return duckdb.sql(
        f"SELECT count(*) - count(DISTINCT ({', '.join(keys)})) "
        f"FROM read_parquet({DeltaTable(uri).file_uris()}, hive_partitioning=true)").fetchall()[0][0]


# Each key shape bronze uses, and a pair of batches sharing one key: the log's and the
# quarantine's long URIs (past delta-rs's truncated string statistics), FHIR's type and
# id, and a table partitioned on part of its key (the genomics tables).
SHAPES = {
    "uri and hash": (["source_uri", "source_sha256"], None,
                     {"source_uri": [LONG + "b.json", LONG + "m.json"], "source_sha256": ["ab", "ab"]},
                     {"source_uri": [LONG + "a.json", LONG + "m.json"], "source_sha256": ["cd", "ab"]}),
    "type and id": (["resource_type", "resource_id"], None,
                    {"resource_type": ["Patient"] * 2,
                     "resource_id": ["2f1e9a3c-0000-4000-8000-000000000001",
                                     "2f1e9a3c-0000-4000-8000-000000000009"]},
                    {"resource_type": ["Patient"] * 2,
                     "resource_id": ["2f1e9a3c-0000-4000-8000-000000000005",
                                     "2f1e9a3c-0000-4000-8000-000000000009"]}),
    "partitioned": (["chrom", "variant_id"], ["chrom"],
                    {"chrom": ["chr1", "chr2"], "variant_id": ["chr1:10:A:G", "chr2:5:C:T"]},
                    {"chrom": ["chr2", "chr3"], "variant_id": ["chr2:5:C:T", "chr3:9:G:A"]}),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_delta_rejects_a_stale_merge_that_inserts_a_key_another_merge_committed(tmp_path, shape):
    """The guarantee parallel writers rest on: a MERGE whose snapshot predates another
    writer's commit of one of its keys fails to commit, instead of storing it twice; the
    same MERGE from a fresh snapshot matches the stored row."""
    keys, parts, first, second = SHAPES[shape]
    uri = str(tmp_path / "t")
    schema = pa.schema([(k, pa.string()) for k in first])
    write_deltalake(uri, schema.empty_table(), partition_by=parts)
    a, b = DeltaTable(uri), DeltaTable(uri)
    _merge(a, pa.table(first, schema), keys)
    with pytest.raises(CommitFailedError):
        _merge(b, pa.table(second, schema), keys)
    b.update_incremental()
    _merge(b, pa.table(second, schema), keys)
    assert _stored_twice(uri, keys) == 0
    assert DeltaTable(uri).version() == 2


def test_delta_rejects_a_stale_merge_after_another_updated_the_row(tmp_path):
    """A concurrent MERGE that rewrote the file holding a key (a newer FHIR resource)
    conflicts with a stale MERGE that read that file."""
    uri = str(tmp_path / "t")
    write_deltalake(uri, pa.table({"k": ["x", "y"], "v": [1, 1]}))
    a, b = DeltaTable(uri), DeltaTable(uri)
    (a.merge(pa.table({"k": ["x"], "v": [2]}), predicate="t.k = s.k", source_alias="s",
             target_alias="t").when_matched_update_all().execute())
    with pytest.raises(CommitFailedError):
        _merge(b, pa.table({"k": ["x", "z"], "v": [3, 3]}), ["k"])


def test_a_blind_append_is_not_rejected_so_parallel_writers_never_append(tmp_path):
    """Why the append fast path is off with parallel writers: an append reads nothing, so
    delta-rs commits it over a key another writer stored after this one's probe."""
    uri = str(tmp_path / "t")
    write_deltalake(uri, pa.table({"k": ["z"], "v": [0]}))
    a, b = DeltaTable(uri), DeltaTable(uri)
    _merge(a, pa.table({"k": ["x"], "v": [1]}), ["k"])
    write_deltalake(b, pa.table({"k": ["x"], "v": [2]}), mode="append")  # commits
    assert _stored_twice(uri, ["k"]) == 1


def test_merge_retries_a_conflict_with_backoff_and_counts_it(home, monkeypatch):
    """lake.merge on a handle another writer has moved past: the commit conflicts, is
    counted, waits a jittered backoff and is retried from a fresh snapshot, where the key
    is found and nothing is stored twice."""
    t = "bronze.items"
    lake.merge(t, pa.table({"k": ["a"], "v": [0]}), ["k"])
    stale = lake.open_table(t)
    lake.merge(t, pa.table({"k": ["x"], "v": [1]}), ["k"])  # another writer's commit
    waits = []
    monkeypatch.setattr(lake.time, "sleep", waits.append)
    before = lake.commit_retries().get(t, 0)
    result = lake.merge(t, pa.table({"k": ["x", "y"], "v": [2, 2]}), ["k"], handle=stale)
    assert lake.commit_retries()[t] == before + 1 and len(waits) == 1
    assert 0.5 * lake.BACKOFF_S <= waits[0] <= lake.BACKOFF_S
    assert (result.inserted, result.updated) == (1, 0)
    assert lake.read(t, "SELECT k, v FROM t ORDER BY k").to_pylist() == [
        {"k": "a", "v": 0}, {"k": "x", "v": 1}, {"k": "y", "v": 2}]


def test_backoff_doubles_to_a_cap_with_jitter():
    for attempt in range(12):
        top = min(lake.BACKOFF_CAP_S, lake.BACKOFF_S * 2 ** attempt)
        waits = {lake.backoff(attempt) for _ in range(20)}
        assert all(top / 2 <= w <= top for w in waits) and len(waits) > 1


def test_writers_racing_to_create_a_table_make_one_version_0(home):
    """lake.ensure from four threads at once: one creates the table, the others use it;
    none commits its create again as a later version (delta-rs's commit retry would)."""
    import threading

    schema = pa.schema([("k", pa.string())])
    for i in range(5):
        gate = threading.Barrier(4)
        errors = []

        def create():
            gate.wait()
            try:
                lake.ensure(f"bronze.race{i}", schema)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=create) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [] and lake.version(f"bronze.race{i}") == 0


def test_bronze_writers_setting_and_its_bad_values(monkeypatch):
    monkeypatch.delenv("MEDLAKE_BRONZE_WRITERS", raising=False)
    assert get_settings().bronze_writers == 1 and get_settings().sole_bronze_writer
    monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", "4")
    assert get_settings().bronze_writers == 4 and not get_settings().sole_bronze_writer
    for bad in ["0", "-2", "two"]:
        monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", bad)
        with pytest.raises(ValueError, match="MEDLAKE_BRONZE_WRITERS"):
            get_settings()


def test_bronze_pool_limit_follows_the_setting(home, monkeypatch):
    """A data team changes MEDLAKE_BRONZE_WRITERS only: the Dagster instance's lake_bronze
    pool gets as many slots; the other pools keep one."""
    import dagster as dg

    from medlake.pipeline import ensure_dagster_home
    from orchestration.policies import POOL_BRONZE, POOL_DBT

    for writers in ("3", "1"):
        monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", writers)
        config = ensure_dagster_home()
        with dg.DagsterInstance.from_config(str(config.parent)) as instance:
            info = instance.event_log_storage.get_pool_limits()
            limits = {p.name: p.limit for p in info}
            assert limits[POOL_BRONZE] == int(writers)
            assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
            assert POOL_DBT not in limits  # the default limit applies


def test_an_ingest_appends_only_when_the_setting_and_the_bronze_pool_both_say_one_writer(
        home, monkeypatch):
    """The bronze assets append new keys only when MEDLAKE_BRONZE_WRITERS is 1 and the
    Dagster instance's lake_bronze pool admits one step at a time; a pool admitting more
    (a deployment's own limit), or none enforced at all, means MERGEs."""
    import dagster as dg

    from assets.bronze import sole_bronze_writer
    from medlake.pipeline import ensure_dagster_home
    from orchestration.policies import POOL_BRONZE

    monkeypatch.delenv("MEDLAKE_BRONZE_WRITERS", raising=False)
    config = ensure_dagster_home()
    with dg.DagsterInstance.from_config(str(config.parent)) as instance:
        assert sole_bronze_writer(instance)
        instance.event_log_storage.set_concurrency_slots(POOL_BRONZE, 3)
        assert not sole_bronze_writer(instance)
        instance.event_log_storage.set_concurrency_slots(POOL_BRONZE, 1)
        monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", "2")
        assert not sole_bronze_writer(instance)
    monkeypatch.delenv("MEDLAKE_BRONZE_WRITERS")
    assert not sole_bronze_writer(dg.DagsterInstance.ephemeral())  # no pools enforced


def test_an_ingest_told_it_is_not_the_sole_writer_only_merges(home, tmp_path):
    from assets.ehr.fhir import FHIR
    from medlake.ingest import ingest

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.ndjson").write_text('{"resourceType":"Patient","id":"a"}\n')
    s = ingest(FHIR, tmp_path / "in", "b", sole_writer=False)
    assert s.files_ingested == 1 and s.commit_retries == 0
    for table in ["bronze.fhir_resources", "bronze.ingest_log"]:
        assert lake.open_table(table).history(1)[0]["operation"] == "MERGE"


# ---------------------------------------------------------------- four real writers


def test_split_deals_each_modalitys_files_round_robin():
    files = {"fhir": [f"f{i}" for i in range(5)], "vcf": ["v0"], "dicom": []}
    batches = parallel.split(files, 3)
    assert batches == [{"fhir": ["f0", "f3"], "vcf": ["v0"], "dicom": []},
                       {"fhir": ["f1", "f4"], "vcf": [], "dicom": []},
                       {"fhir": ["f2"], "vcf": [], "dicom": []}]
    with pytest.raises(ValueError, match="unknown modality"):
        parallel.modality("pdf")


def _landing_with_shared_keys(landing):
    """Generated patients with bad files, plus files that share keys with others: part
    of a patient's bundle again under another name (its Patient, Encounter...), half of
    the cohort VCF as a plain VCF (the same sites and genotypes), a DICOM instance and
    the sample manifest again under other names. Each has bytes of its own (a DICOM
    preamble byte, a blank line) but the same rows: one process ingests the same bytes
    under two names once (and logs one name), which two processes cannot know of."""
    from medlake.generate import generate

    generate(landing, patients=6, seed=11, bad_files=True)
    bundle = orjson.loads((landing / "fhir" / "patient-0001.json").read_bytes())
    bundle["entry"] = bundle["entry"][:12]
    (landing / "fhir" / "again-0001.json").write_bytes(orjson.dumps(bundle))
    lines = gzip.decompress((landing / "vcf" / "cohort.vcf.gz").read_bytes()).decode().splitlines()
    records = [line for line in lines if not line.startswith("#")]
    header = [line for line in lines if line.startswith("#")]
    (landing / "vcf" / "again-half.vcf").write_text("\n".join(header + records[::2]) + "\n")
    manifest = (landing / "vcf" / "sample_manifest.csv").read_text()
    (landing / "vcf" / "again-manifest.csv").write_text(manifest + "\n")
    dcm = bytearray(sorted((landing / "dicom").rglob("*.dcm"))[0].read_bytes())
    dcm[0] ^= 1  # the preamble, which no reader looks at
    (landing / "dicom" / "again.dcm").write_bytes(bytes(dcm))


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_four_concurrent_ingests_land_every_row_exactly_once(storage, tmp_path, monkeypatch, request):
    """Four ingest processes, started together, on batches of the same landing zone that
    share keys (files above) and files (each batch also takes files of the next one, bad
    ones among them): the bronze tables hold what one process ingesting the union
    stores, no key twice, every file logged and every bad one quarantined once; the
    writes are MERGE commits from all four, and conflicts between them were retried.
    On S3 the four write a bucket on the loopback S3 API server, and the reference is
    the same union ingested on local disk."""
    from tests.conftest import use_home, use_s3

    use_home(monkeypatch, tmp_path / "ref")
    landing = get_settings().landing
    _landing_with_shared_keys(landing)
    files = parallel.landing_files(landing)
    parallel.ingest_batch(files, "reference", chunk_files=2)
    reference = verify.snapshot(("bronze",))
    assert verify.check(("bronze",)) == []

    if storage == "s3":
        use_s3(monkeypatch, tmp_path / "par", request.getfixturevalue("s3_endpoint"),
               f"writers-{uuid.uuid4().hex[:12]}")
    else:
        use_home(monkeypatch, tmp_path / "par")
    monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", "4")
    batches = parallel.split(files, 4)
    for i, batch in enumerate(batches):  # the same files in two batches, bad ones too
        following = batches[(i + 1) % 4]
        for name in batch:
            batch[name] = sorted(set(batch[name]) | set(following[name][:1]))
    assert any(p.name.startswith("bad") for b in batches for ps in b.values() for p in ps[:1])
    got = parallel.run_writers(batches, chunk_files=2)

    assert got["errors"] == []
    assert verify.check(("bronze",), reference) == []
    assert got["commit_retries"] > 0
    log = lake.read("bronze.ingest_log", "SELECT DISTINCT batch_id FROM t").column(0).to_pylist()
    assert sorted(log) == [f"writer-{i}" for i in range(4)]
    assert lake.uri("bronze.ingest_log").startswith("s3://" if storage == "s3" else "/")
    ops = {t: [c["operation"] for c in lake.open_table(t).history() if c["version"] > 0]
           for t in verify.tables(("bronze",))}  # version 0 created the table
    assert all(set(o) == {"MERGE"} for o in ops.values()), ops  # nothing appended, one create
    assert ops["bronze.ingest_log"].count("MERGE") >= 4  # every writer's chunks


def test_a_streamed_file_that_turns_bad_never_takes_a_row_another_writer_relies_on(
        home, tmp_path, monkeypatch):
    """With other writers about, a big VCF whose last record is malformed must not land
    rows before that is known: another writer may meanwhile MERGE a file sharing its
    sites, find them stored and insert nothing, and the bad file's cleanup (a delete by
    its hash) would then take those sites with it. Here the other writer's whole ingest
    runs just before the bad record is read, and the writes are synchronous so that
    whatever the bad file flushed is committed by then."""
    from assets.genomics import vcf as vcfmod
    from assets.genomics.vcf import VCF
    from medlake import ingest as engine

    def write(path, records, samples):
        header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
                  '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
                  "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                             "FORMAT", *samples])]
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(header + records) + "\n")

    def record(pos):
        return "\t".join(["chr1", str(pos), ".", "A", "G", "50", "PASS", ".", "GT", "0/1", "1/1"])

    write(tmp_path / "a" / "late-error.vcf", [record(100 + i) for i in range(30)] + ["chr1\t500\t.\tA"],
          ("S1", "S2"))
    write(tmp_path / "b" / "good.vcf", [record(100 + i) for i in range(30)], ("S1", "S2"))
    monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", "4")
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(vcfmod, "BATCH_SITES", 5)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    monkeypatch.setattr(engine._Writer, "submit", lambda self, job: job())
    real_parse, parses = VCF.parse, []

    def parse(path):
        parses.append(path.name)
        for piece in real_parse(path):
            if piece.fatal and path.name == "late-error.vcf" and "good.vcf" not in parses:
                other = engine.ingest(VCF, tmp_path / "b", "other-writer")
                assert other.files_ingested == 1
            yield piece

    monkeypatch.setattr(VCF, "parse", parse)
    bad = engine.ingest(VCF, tmp_path / "a", "bad-writer")

    assert bad.files_quarantined == 1 and parses.count("late-error.vcf") == 1
    assert lake.read("bronze.vcf_variants", "SELECT count(*) FROM t").column(0)[0].as_py() == 30
    assert lake.read("bronze.vcf_genotypes", "SELECT sample_id, count(*) AS n FROM t GROUP BY 1 "
                     "ORDER BY 1").to_pylist() == [{"sample_id": "S1", "n": 30}, {"sample_id": "S2", "n": 30}]
    good = (tmp_path / "b" / "good.vcf").resolve().as_uri()
    for table in ("bronze.vcf_variants", "bronze.vcf_genotypes"):
        assert lake.read(table, f"SELECT DISTINCT source_uri FROM t").column(0).to_pylist() == [good]
    # Nothing of the bad file was ever committed, so nothing had to be deleted.
    ops = [c["operation"] for c in lake.open_table("bronze.vcf_genotypes").history()]
    assert "DELETE" not in ops


def test_a_big_streamed_file_is_checked_whole_before_its_rows_land_among_other_writers(
        home, tmp_path, monkeypatch):
    """...which costs a good file that outgrows one flush a second parse, only then."""
    from assets.genomics import vcf as vcfmod
    from assets.genomics.vcf import VCF
    from medlake import ingest as engine
    from tests.conftest import use_home

    header = ["##fileformat=VCFv4.2", "##contig=<ID=chr1,length=1000000>",
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2"]
    records = [f"chr1\t{100 + i}\t.\tA\tG\t50\tPASS\t.\tGT\t0/1\t1/1" for i in range(40)]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.vcf").write_text("\n".join(header + records) + "\n")
    (tmp_path / "in" / "small.vcf").write_text("\n".join(header + records[:3]) + "\n")
    monkeypatch.setattr(vcfmod, "BATCH_GENOTYPES", 10)
    monkeypatch.setattr(VCF, "flush_rows", 20)
    real_parse, parses = VCF.parse, []
    monkeypatch.setattr(VCF, "parse", lambda path: (parses.append(path.name), real_parse(path))[1])

    for writers, big_parses in (("1", 1), ("4", 2)):
        parses.clear()
        use_home(monkeypatch, tmp_path / f"writers-{writers}")
        monkeypatch.setenv("MEDLAKE_BRONZE_WRITERS", writers)
        s = engine.ingest(VCF, tmp_path / "in", "b")
        assert s.files_ingested == 2 and s.rows["bronze.vcf_genotypes"] == 80
        assert (parses.count("big.vcf"), parses.count("small.vcf")) == (big_parses, 1)
        assert lake.read("bronze.vcf_genotypes", "SELECT count(*) FROM t").column(0)[0].as_py() == 80
        assert lake.version("bronze.vcf_genotypes") >= 3  # still merged in several commits
