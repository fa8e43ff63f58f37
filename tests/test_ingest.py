"""Bronze ingestion on real public files: Synthea bundles, cyvcf2's VCF test files and
pydicom's DICOM test corpus."""
import json
import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from assets.ehr.fhir import FHIR
from assets.imaging.dicom import DICOM
from medlake import lake
from medlake.ingest import Modality, Parsed, TableSpec, ingest, sha256_file


def _copy(src: Path, dst: Path, pattern: str = "*") -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob(pattern):
        if f.is_file():
            shutil.copy(f, dst / f.name)
    return dst


def test_synthea_bundles_land_whole_and_rerun_changes_nothing(home, shared):
    src = shared / "data" / "fhir" / "synthea-bundles"
    expected = {}
    for f in src.glob("*.json"):
        for e in json.loads(f.read_text())["entry"]:
            r = e["resource"]
            expected[(r["resourceType"], r["id"])] = True
    s1 = ingest(FHIR, src, "batch-1")
    assert s1.files_ingested == 10 and s1.files_quarantined == 0 and s1.problems == 0
    got = lake.read("bronze.fhir_resources", "SELECT resource_type, resource_id FROM t")
    assert got.num_rows == len(expected)  # distinct resources across all bundles
    assert set(zip(*[got.column(i).to_pylist() for i in range(2)])) == set(expected)
    v = lake.version("bronze.fhir_resources")

    s2 = ingest(FHIR, src, "batch-2")
    assert s2.files_skipped == 10 and s2.files_ingested == 0
    assert lake.version("bronze.fhir_resources") == v
    assert lake.read("bronze.quarantine").num_rows == 0


def test_references_resolved_and_patient_compartment_filled(home, tmp_path):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:e1", "resource": {"resourceType": "Encounter", "id": "e1",
                                                "subject": {"reference": "urn:uuid:p1"}}},
        {"fullUrl": "urn:uuid:o1", "resource": {
            "resourceType": "Observation", "id": "o1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
            "subject": {"reference": "urn:uuid:p1"}, "encounter": {"reference": "urn:uuid:e1"}}},
        {"fullUrl": "urn:uuid:x", "resource": {"resourceType": "Observation"}},
        {"fullUrl": "urn:uuid:y", "resource": {"id": "y"}},
    ]}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.json").write_bytes(orjson.dumps(bundle))
    s = ingest(FHIR, tmp_path / "in", "b")
    assert s.files_ingested == 1 and s.problems == 2
    rows = {r["resource_id"]: r for r in lake.read("bronze.fhir_resources").to_pylist()}
    assert set(rows) == {"p1", "e1", "o1"}
    obs = json.loads(rows["o1"]["resource"])
    assert obs["encounter"]["reference"] == "Encounter/e1"
    assert rows["o1"]["patient_ref"] == rows["e1"]["patient_ref"] == "Patient/p1"
    q = lake.read("bronze.quarantine", "SELECT source_uri, error FROM t ORDER BY 1").to_pylist()
    assert [r["source_uri"].rsplit("#", 1)[1] for r in q] == ["entry=3", "entry=4"]
    assert "no id" in q[0]["error"] and "resourceType" in q[1]["error"]


def test_ndjson_bad_line_quarantines_only_that_line(home, tmp_path):
    d = tmp_path / "bulk"
    d.mkdir()
    (d / "Patient.ndjson").write_text(
        '{"resourceType":"Patient","id":"a"}\n{"resourceType":"Patient",\n'
        '{"resourceType":"Patient","id":"b"}\n')
    s = ingest(FHIR, d, "b")
    assert s.problems == 1 and s.files_ingested == 1
    assert lake.read("bronze.fhir_resources").num_rows == 2
    q = lake.read("bronze.quarantine").to_pylist()
    assert q[0]["source_uri"].endswith("#line=2") and "not valid JSON" in q[0]["error"]


def _bundle_rows(path: Path) -> pa.Table:
    from assets.ehr import fhir
    return fhir.parse(path).rows["bronze.fhir_resources"].table()


def test_compact_bundles_take_the_fast_path_and_land_what_the_general_path_would(tmp_path):
    """A compact Bundle is read by msgspec with its resources kept as received; a pretty,
    spaced or escaped copy of it goes through orjson. Every copy gives the same rows:
    references resolved, the unknown urn kept, contained resources inside their parent."""
    from assets.ehr import fhir

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1",
                                                "name": [{"family": "Zoë"}]}},
        {"fullUrl": "urn:uuid:e1", "resource": {"resourceType": "Encounter", "id": "e1",
                                                "subject": {"reference": "urn:uuid:p1"}}},
        {"fullUrl": "urn:uuid:o1", "resource": {
            "resourceType": "Observation", "id": "o1", "meta": {"lastUpdated": "2024-01-01T00:00:00Z"},
            "contained": [{"resourceType": "Practitioner", "id": "dr"}],
            "performer": [{"reference": "#dr"}], "focus": [{"reference": "urn:uuid:elsewhere"}],
            "subject": {"reference": "urn:uuid:p1"}, "encounter": {"reference": "urn:uuid:e1"}}},
    ]}
    compact = orjson.dumps(bundle)
    copies = {"compact": compact, "pretty": json.dumps(bundle, indent=2).encode(),
              "spaced": json.dumps(bundle, ensure_ascii=False).encode(),
              "escaped": compact.replace(b'"urn:uuid:e1"}}', b'"urn:uuid:\\u00651"}}')}
    assert b"\\u0065" in copies["escaped"]
    assert fhir._fast_bundle(compact) is not None
    assert all(fhir._fast_bundle(text) is None for name, text in copies.items() if name != "compact")
    tables = {}
    for name, text in copies.items():
        (tmp_path / f"{name}.json").write_bytes(text)
        tables[name] = _bundle_rows(tmp_path / f"{name}.json")
    assert all(t.equals(tables["compact"]) for t in tables.values())
    rows = {r["resource_id"]: r for r in tables["compact"].to_pylist()}
    obs = json.loads(rows["o1"]["resource"])
    assert obs["encounter"]["reference"] == "Encounter/e1" and obs["subject"]["reference"] == "Patient/p1"
    assert obs["focus"][0]["reference"] == "urn:uuid:elsewhere" and obs["contained"][0]["id"] == "dr"
    assert rows["o1"]["patient_ref"] == rows["e1"]["patient_ref"] == rows["p1"]["patient_ref"] == "Patient/p1"
    assert json.loads(rows["p1"]["resource"])["name"][0]["family"] == "Zoë"
    assert str(rows["o1"]["last_updated"]).startswith("2024-01-01")


def test_bytes_that_are_not_utf8_never_land(home, tmp_path):
    """msgspec does not check the strings it skips: the fast path checks the bytes itself,
    so a line or file that is not UTF-8 is quarantined as before, not stored."""
    d = tmp_path / "in"
    d.mkdir()
    (d / "Patient.ndjson").write_bytes(b'{"resourceType":"Patient","id":"a"}\n'
                                       b'{"resourceType":"Patient","id":"b","text":"\xff"}\n'
                                       b'{"resourceType":"Patient","id":"c"}\n')
    (d / "b.json").write_bytes(b'{"resourceType":"Bundle","entry":[{"resource":'
                               b'{"resourceType":"Patient","id":"d","text":"\xff"}}]}')
    s = ingest(FHIR, d, "b")
    assert s.files_quarantined == 1 and s.problems == 2
    assert sorted(lake.read("bronze.fhir_resources", "SELECT resource_id FROM t").column(0).to_pylist()) == ["a", "c"]
    q = lake.read("bronze.quarantine", "SELECT source_uri, error FROM t ORDER BY 1").to_pylist()
    assert q[0]["source_uri"].endswith("Patient.ndjson#line=2") and q[1]["source_uri"].endswith("b.json")
    assert all("not valid JSON" in r["error"] for r in q)


def test_ndjson_in_pieces_written_while_parsing_lands_whole_and_once(home, tmp_path, monkeypatch):
    """A bulk file read in pieces of two lines and written every three rows, on the
    background writer while the next pieces are parsed: every resource lands once, a bad
    line keeps its line number in the file, and a repeated resource keeps the newer copy."""
    import assets.ehr.fhir as fhir

    monkeypatch.setattr(fhir, "NDJSON_LINES", 2)
    monkeypatch.setattr(FHIR, "flush_rows", 3)
    lines = [orjson.dumps({"resourceType": "Observation", "id": f"o{i}",
                           "subject": {"reference": "Patient/p1"}}).decode() for i in range(9)]
    lines[6] = '{"resourceType":"Observation",'  # line 7
    lines.append(orjson.dumps({"resourceType": "Observation", "id": "o1", "status": "amended",
                               "meta": {"lastUpdated": "2024-01-01T00:00:00Z"}}).decode())
    d = tmp_path / "bulk"
    d.mkdir()
    (d / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    s = ingest(FHIR, d, "b")
    assert s.files_ingested == 1 and s.problems == 1
    rows = lake.read("bronze.fhir_resources", "SELECT resource_id, patient_ref, resource FROM t").to_pylist()
    assert sorted(r["resource_id"] for r in rows) == [f"o{i}" for i in range(9) if i != 6]
    assert json.loads(next(r for r in rows if r["resource_id"] == "o1")["resource"])["status"] == "amended"
    assert lake.version("bronze.fhir_resources") >= 3  # several writes, not one at the end
    q = lake.read("bronze.quarantine").to_pylist()
    assert [r["source_uri"].rsplit("#", 1)[1] for r in q] == ["line=7"]
    v = lake.version("bronze.fhir_resources")
    assert ingest(FHIR, d, "again").files_skipped == 1 and lake.version("bronze.fhir_resources") == v


def test_newer_resource_replaces_older_but_not_the_reverse(home, tmp_path):
    def drop(name, updated, status):
        d = tmp_path / name
        d.mkdir()
        (d / "r.json").write_bytes(orjson.dumps({
            "resourceType": "Encounter", "id": "e", "status": status,
            "meta": {"lastUpdated": updated}}))
        return d

    ingest(FHIR, drop("v2", "2024-02-01T00:00:00Z", "finished"), "b1")
    ingest(FHIR, drop("v1", "2024-01-01T00:00:00Z", "in-progress"), "b2")
    row = lake.read("bronze.fhir_resources").to_pylist()[0]
    assert json.loads(row["resource"])["status"] == "finished"
    ingest(FHIR, drop("v3", "2024-03-01T00:00:00Z", "cancelled"), "b3")
    row = lake.read("bronze.fhir_resources").to_pylist()[0]
    assert json.loads(row["resource"])["status"] == "cancelled" and row["batch_id"] == "b3"


def test_pydicom_corpus_every_file_accounted_for(home, monkeypatch):
    """All 176 files of pydicom's corpus, extension or not: each lands in bronze, is
    quarantined with a sentence, or is a DICOMDIR logged as a directory; nothing raises."""
    import pydicom

    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    files = [p for p in corpus.rglob("*") if p.is_file()]
    import medlake.ingest as engine

    monkeypatch.setattr(engine, "POOL_MIN_FILES", 1)  # on the worker pool, as at scale
    s = ingest(DICOM, corpus, "b", workers=2)
    assert s.files_seen == len(files) == 176
    digests = {p.resolve().as_uri(): sha256_file(p) for p in files}
    landed = set(lake.read("bronze.dicom_instances", "SELECT DISTINCT source_sha256 FROM t")
                 .column(0).to_pylist())
    quarantine = lake.read("bronze.quarantine").to_pylist()
    quarantined = {r["source_sha256"] for r in quarantine}
    log = lake.read("bronze.ingest_log").to_pylist()
    status = {r["source_sha256"]: r["status"] for r in log}
    # Every file's bytes are logged once (duplicates skipped), each with one outcome.
    assert set(digests.values()) == set(status)
    assert quarantined == {d for d, st in status.items() if st == "quarantined"}
    directories = {d for d, st in status.items() if st == "directory"}
    ingested = {r["source_sha256"] for r in log if r["status"] == "ingested" and r["rows"] == 1}
    assert ingested | quarantined | directories == set(status)
    # Files repeating a SOP Instance UID are one instance: bronze holds one of them.
    assert landed <= ingested and len(landed) > 100
    assert {u.rsplit("/", 1)[1].split("-")[0] for u, d in digests.items() if d in directories} \
        == {"DICOMDIR"}
    for name in ("README.txt", "zipMR.gz", "crayons.icc", "test1.json"):
        assert any(r["source_uri"].endswith("/" + name) for r in quarantine)
    assert s.files_ingested > 100 and s.files_quarantined > 5
    for r in quarantine:
        assert r["error"].endswith(".") and len(r["error"].split()) >= 6
    # Bulk values are marked, never stored: no value in a header is over the threshold.
    big = lake.read("bronze.dicom_instances",
                    "SELECT count(*) FROM t WHERE header LIKE '%omitted-bulk-data%'")
    assert big.column(0)[0].as_py() > 0


@pytest.mark.parametrize("content", [b"", b"not a dicom file at all"])
def test_non_dicom_is_quarantined_not_raised(home, tmp_path, content):
    d = tmp_path / "dicom"
    d.mkdir()
    (d / "x.dcm").write_bytes(content)
    s = ingest(DICOM, d, "b")
    assert s.files_quarantined == 1
    assert lake.read("bronze.quarantine").to_pylist()[0]["modality"] == "dicom"


def test_run_killed_before_the_log_commit_is_finished_by_the_next_run(home, shared, monkeypatch):
    """Rows committed but the file not yet logged (a crash between the two commits):
    the next run re-processes the file, and the MERGE keeps it free of duplicates."""
    import medlake.ingest as engine

    src = shared / "data" / "fhir" / "synthea-bundles"
    real_merge = lake.merge

    def crash_on_log(table, *args, **kwargs):
        if table == engine.INGEST_LOG:
            raise KeyboardInterrupt("killed")
        return real_merge(table, *args, **kwargs)

    monkeypatch.setattr(engine.lake, "merge", crash_on_log)
    with pytest.raises(KeyboardInterrupt):
        ingest(FHIR, src, "crashed")
    rows_after_crash = lake.read("bronze.fhir_resources", "SELECT count(*) FROM t").column(0)[0].as_py()
    assert rows_after_crash > 0
    assert lake.read("bronze.ingest_log").num_rows == 0

    monkeypatch.setattr(engine.lake, "merge", real_merge)
    s = ingest(FHIR, src, "retry")
    assert s.files_ingested == 10 and s.files_skipped == 0
    got = lake.read("bronze.fhir_resources",
                    "SELECT count(*), count(DISTINCT (resource_type, resource_id)) FROM t").to_pylist()[0]
    assert list(got.values()) == [rows_after_crash, rows_after_crash]
    assert lake.read("bronze.ingest_log").num_rows == 10


def test_generated_bulk_ndjson_lands_like_the_bundles(home, tmp_path):
    from medlake.generate import generate

    result = generate(tmp_path / "landing", patients=3, seed=3, ndjson=True)
    s = ingest(FHIR, tmp_path / "landing" / "fhir", "b")
    assert s.problems == 0 and s.files_ingested == len(result.fhir_resources)
    by_type = lake.read("bronze.fhir_resources",
                        "SELECT resource_type, count(*) AS n, count(patient_ref) AS linked "
                        "FROM t GROUP BY 1").to_pylist()
    assert {r["resource_type"]: r["n"] for r in by_type} == result.fhir_resources
    assert all(r["n"] == r["linked"] for r in by_type)  # every resource is in a compartment


def _slow_parse(path: Path) -> Parsed:
    """A parser that hangs on one file (module-level: pool workers import it); on
    `deaf.txt` it also blocks the timer's signal, as C code stuck in a loop would."""
    import signal
    import time

    if path.name == "deaf.txt":
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
    if path.name in ("hangs.txt", "deaf.txt"):
        time.sleep(60)
    return Parsed(rows={"bronze.test_rows": [{"name": path.name}]})


SLOW = Modality("slow", ["*.txt"], [TableSpec("bronze.test_rows", pa.schema([
    ("name", pa.string()), ("source_uri", pa.string()), ("source_sha256", pa.string()),
    ("batch_id", pa.string()), ("ingested_at", pa.timestamp("us", tz="UTC"))]), ["name"])],
    _slow_parse)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_hanging_file_is_quarantined_and_the_rest_lands(home, tmp_path, monkeypatch, workers):
    import medlake.ingest as engine

    monkeypatch.setattr(engine, "POOL_MIN_FILES", 1)  # use the pool even for a few files
    for name in ("a.txt", "hangs.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text(name)
    s = ingest(SLOW, tmp_path, "b", workers=workers, timeout_s=1)
    assert (s.files_ingested, s.files_quarantined) == (3, 1)
    [q] = lake.read("bronze.quarantine").to_pylist()
    assert q["source_uri"].endswith("/hangs.txt") and "longer than 1 seconds" in q["error"]
    assert sorted(lake.read("bronze.test_rows", "SELECT name FROM t").column(0).to_pylist()) \
        == ["a.txt", "b.txt", "c.txt"]


def test_unchanged_files_are_skipped_without_hashing(home, tmp_path, monkeypatch):
    import os

    import medlake.ingest as engine

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text(name)
    ingest(SLOW, tmp_path, "b1")
    hashed = []
    monkeypatch.setattr(engine, "sha256_file", lambda p: hashed.append(p.name) or sha256_file(p))
    version = lake.version("bronze.ingest_log")
    assert ingest(SLOW, tmp_path, "b2").files_skipped == 2 and hashed == []
    # Touched but unchanged: hashed once, still skipped; changed bytes: ingested again.
    os.utime(tmp_path / "a.txt", ns=(1, 1))
    (tmp_path / "b.txt").write_text("new bytes")
    s = ingest(SLOW, tmp_path, "b3")
    assert sorted(hashed) == ["a.txt", "b.txt"] and (s.files_skipped, s.files_ingested) == (1, 1)
    assert lake.version("bronze.ingest_log") == version + 1


def test_a_worker_deaf_to_its_timer_is_replaced_and_its_file_quarantined(home, tmp_path,
                                                                        monkeypatch):
    import medlake.ingest as engine

    monkeypatch.setattr(engine, "POOL_MIN_FILES", 1)
    monkeypatch.setattr(engine, "BATCH_FILES", 2)
    # Batches [a, deaf] and [z]: the stuck batch is retried file by file.
    for name in ("a.txt", "deaf.txt", "z.txt"):
        (tmp_path / name).write_text(name)
    s = ingest(SLOW, tmp_path, "b", workers=2, timeout_s=1)
    assert (s.files_ingested, s.files_quarantined) == (2, 1)
    [q] = lake.read("bronze.quarantine").to_pylist()
    assert q["source_uri"].endswith("/deaf.txt")
    assert sorted(lake.read("bronze.test_rows", "SELECT name FROM t").column(0).to_pylist()) \
        == ["a.txt", "z.txt"]


def test_a_deaf_worker_is_replaced_even_when_sigterm_is_ignored(tmp_path):
    # Dagster maps SIGTERM to SIGINT's handler, which a shell's background job ignores,
    # and workers inherit an ignored signal: replacing a stuck pool (SIGTERM) must still
    # work, not hang the run. The test above, in a process that ignores SIGTERM.
    import signal
    import subprocess
    import sys

    test = f"{__file__}::test_a_worker_deaf_to_its_timer_is_replaced_and_its_file_quarantined"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
                         capture_output=True, text=True, timeout=240, cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    assert out.returncode == 0, out.stdout[-2000:]


def test_a_flush_writes_its_tables_side_by_side_each_in_its_order(monkeypatch):
    # A flush holding two files' rows for two tables: the tables are written at once
    # (each one's first write waits for the other's), each table's files in order, so
    # an earlier file's rows are still stored before a later file's on a shared key.
    import threading

    import medlake.ingest as engine

    both_started = threading.Barrier(2, timeout=10)
    written = []

    def write_table(self, spec, parts):
        if parts[0][0] == "file-1":
            both_started.wait()  # sequential writes would never get past this
        written.append((spec.name, parts[0][0]))

    monkeypatch.setattr(engine._Buffer, "_write_table", write_table)
    a, b = (TableSpec(name=f"bronze.{n}", schema=pa.schema([("k", pa.string())]), keys=["k"])
            for n in "ab")
    engine._Buffer.write(object.__new__(engine._Buffer),
                         [(a, [("file-1", [], True)]), (b, [("file-1", [], True)]),
                          (a, [("file-2", [], True)]), (b, [("file-2", [], True)])])
    for spec in (a, b):
        assert [f for t, f in written if t == spec.name] == ["file-1", "file-2"]
