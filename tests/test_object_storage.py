"""The lake, the vectors' side files and the landing zone on S3 (a real S3 API server on
loopback: the `s3_endpoint` fixture), through the same code as a local lake. The whole
demo pipeline on S3 is in test_e2e.py, parametrized over both."""
import os
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from medlake import lake, landing, maintenance, storage
from medlake.config import get_settings


SCHEMA = pa.schema([("id", pa.int64()), ("v", pa.string())])


def rows(ids, value="a"):
    return pa.table({"id": ids, "v": [f"{value}{i}" for i in ids]}, schema=SCHEMA)


def test_storage_options_make_commits_safe_and_leave_local_lakes_alone(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_S3_ALLOW_UNSAFE_RENAME", "true")  # refused whatever it says
    s = get_settings()
    delta = s.storage_options("s3://bucket/lake/bronze/t")
    assert delta["AWS_CONDITIONAL_PUT"] == "etag" and delta["AWS_S3_ALLOW_UNSAFE_RENAME"] == "false"
    assert delta["AWS_ALLOW_HTTP"] == "true" and delta["AWS_REGION"] == "eu-west-1"
    assert delta["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9000" and delta["AWS_ACCESS_KEY_ID"] == "k"
    lance = s.storage_options("s3://bucket/vectors", lance=True)
    assert lance == {"region": "eu-west-1", "aws_endpoint": "http://127.0.0.1:9000",
                     "allow_http": "true", "aws_access_key_id": "k", "aws_secret_access_key": "s"}
    assert s.storage_options("/data/lake") is None and s.storage_options("file:///data") is None
    with pytest.raises(ValueError, match="only local paths and s3://"):
        s.storage_options("gs://bucket/lake")
    # An https endpoint (or AWS itself) never allows plain HTTP; no keys: the credential chain.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "https://minio.example")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    delta = get_settings().storage_options("s3://bucket/lake")
    assert "AWS_ALLOW_HTTP" not in delta and "AWS_ACCESS_KEY_ID" not in delta


def test_tables_on_s3_merge_append_read_list_delete_and_time_travel(s3_home):
    bucket = get_settings().lake_uri.removeprefix("s3://").split("/")[0]
    first = lake.merge("bronze.t", rows([1, 2, 3]), ["id"])
    assert first.inserted == 3
    assert lake.merge("bronze.t", rows([1, 2, 3]), ["id"]).version == first.version  # no commit
    second = lake.merge("bronze.t", rows([3, 4], "b"), ["id"], update_when="s.v <> t.v")
    assert (second.version, second.inserted, second.updated) == (first.version + 1, 1, 1)
    assert lake.read("bronze.t", "SELECT id, v FROM t ORDER BY id").to_pylist()[2:] == [
        {"id": 3, "v": "b3"}, {"id": 4, "v": "b4"}]
    assert lake.read("bronze.t", "SELECT v FROM t WHERE id = 3",
                     version=first.version).column(0).to_pylist() == ["a3"]  # time travel
    assert lake.holds_any("bronze.t", rows([4, 9]), ["id"])
    assert not lake.holds_any("bronze.t", rows([9]), ["id"])

    lake.append("gold.log", rows([1]))
    lake.append("gold.log", rows([2]))
    fp = "same-content"
    built = lake.replace_if_changed("silver.model", rows([1, 2]), fp)
    assert lake.replace_if_changed("silver.model", rows([1, 2]), fp).version == built.version
    assert lake.list_tables("bronze") == ["bronze.t"]
    assert lake.list_tables("silver") == ["silver.model"]
    assert lake.list_tables("gold") == ["gold.log"] and lake.list_tables("nothing") == []

    assert lake.delete("bronze.t", "id >= 3") == 2
    assert lake.delete("bronze.t", "id >= 3") == 0  # nothing to delete: nothing committed
    assert lake.stats("bronze.t")["rows"] == 2 and lake.stats("gold.log")["rows"] == 2
    # It all lives in the bucket; nothing was written to a local lake folder.
    fs = storage.filesystem()
    assert fs.exists(f"{bucket}/lake/bronze/t/_delta_log/00000000000000000000.json")
    assert not (s3_home / "lake").exists()
    # Nightly maintenance on S3: compacting commits one version, vacuum none.
    done = maintenance.maintain_layers(["bronze"], retention_days=30)[0]
    assert done["version_after"] in (done["version_before"], done["version_before"] + 1)
    assert lake.stats("bronze.t")["rows"] == 2


def test_duckdb_reads_data_files_from_a_local_cache(s3_home, monkeypatch):
    lake.merge("silver.c", rows([1, 2]), ["id"])
    uris = lake.open_table("silver.c").file_uris()
    cached = storage.local_files(uris)
    cache = s3_home / "lake_cache"
    assert [Path(p).relative_to(cache).as_posix() for p in cached] == [storage.strip(u) for u in uris]
    assert all(Path(p).is_file() for p in cached)

    def no_fetch(*args, **kwargs):
        raise AssertionError("fetched a file already cached")

    with monkeypatch.context() as m:  # cached copies are read without asking S3
        m.setattr(storage.filesystem(), "get", no_fetch)  # fsspec's one instance
        assert lake.read("silver.c", "SELECT sum(id) FROM t").column(0)[0].as_py() == 3
    with monkeypatch.context() as m:  # (the check above does bite)
        m.setattr(storage.filesystem(), "get", no_fetch)
        with pytest.raises(AssertionError, match="already cached"):
            storage.local_files([u.replace(".parquet", "-absent.parquet") for u in uris])
    assert not list(cache.rglob("*.part"))  # fetched under temporary names, then renamed
    # Copies unused for MEDLAKE_LAKE_CACHE_DAYS are pruned by the nightly maintenance;
    # a later read fetches them again.
    old = time.time() - 8 * 86_400
    for p in cached:
        os.utime(p, (old, old))
    monkeypatch.setenv("MEDLAKE_LAKE_CACHE_DAYS", "7")
    maintenance.maintain_layers(["silver"], retention_days=30)
    assert not any(Path(p).exists() for p in cached)
    assert lake.read("silver.c", "SELECT sum(id) FROM t").column(0)[0].as_py() == 3


def test_arrow_writer_falls_back_to_delta_rs_on_s3(s3_home):
    data = pa.table({"chrom": ["1", "1", "2"], "id": pa.array([1, 2, 3], pa.int64())})
    lake.ensure("bronze.parts", data.schema, partition_by=["chrom"])
    got = lake.merge("bronze.parts", data, ["chrom", "id"], sole_writer=True,
                     writer_properties=lake.ArrowWriter())
    assert got.appended and got.inserted == 3
    assert lake.read("bronze.parts", "SELECT chrom, count(*) n FROM t GROUP BY 1 ORDER BY 1"
                     ).to_pylist() == [{"chrom": "1", "n": 2}, {"chrom": "2", "n": 1}]
    assert all(u.startswith("s3://") for u in lake.open_table("bronze.parts").file_uris())


def test_concurrent_commits_on_stale_handles_land_as_next_versions(s3_home):
    """Writers holding the same old version each commit: every commit lands, as its own
    next version (the log entry is put only if absent), none overwrites another."""
    lake.ensure("bronze.race", SCHEMA)
    uri, opts = lake.uri("bronze.race"), lake.options()
    handles = [DeltaTable(uri, storage_options=opts) for _ in range(4)]
    assert {h.version() for h in handles} == {0}
    write_deltalake(handles[0], rows([0]), mode="append")  # the others are now stale
    errors = []

    def append(i):
        try:
            write_deltalake(handles[i], rows([i]), mode="append")
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=append, args=(i,)) for i in (1, 2, 3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    dt = lake.open_table("bronze.race")
    assert dt.version() == 4
    assert sorted(lake.read("bronze.race", "SELECT id FROM t").column(0).to_pylist()) == [0, 1, 2, 3]
    assert len(dt.history()) == 5  # the create and four appends, each its own version
    # A MERGE through a stale handle is retried against the new version, not lost.
    stale = DeltaTable(uri, storage_options=opts)
    write_deltalake(lake.open_table("bronze.race"), rows([7]), mode="append")
    got = lake.merge("bronze.race", rows([8]), ["id"], handle=stale)
    assert got.version == 6 and got.inserted == 1
    assert lake.read("bronze.race", "SELECT count(*) FROM t").column(0)[0].as_py() == 6


def _put(fs, uri, data: bytes) -> None:
    fs.pipe_file(storage.strip(uri), data)


def test_landing_on_s3_is_staged_by_key_size_and_etag(s3_home, monkeypatch):
    fs, base = storage.filesystem(), get_settings().landing_uri
    patterns = ["**/*.json", "**/*.ndjson"]
    _put(fs, f"{base}/fhir/a.json", b'{"x": 1}')
    _put(fs, f"{base}/fhir/sub/b.ndjson", b"{}\n")
    _put(fs, f"{base}/fhir/notes.txt", b"not FHIR")
    root = landing.stage("fhir", "fhir", patterns)
    assert root == s3_home / "landing_cache" / "fhir"
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "a.json", "sub/b.ndjson"]
    info = fs.info(storage.strip(f"{base}/fhir/a.json"))
    assert (root / "a.json").stat().st_mtime_ns == landing._mtime_ns(info)
    # The recorded URI is the object's, not the cache's.
    assert get_settings().source_uri(root / "sub" / "b.ndjson") == f"{base}/fhir/sub/b.ndjson"

    fetched, real_get = [], fs.get

    def counting_get(rpaths, lpaths, **kwargs):
        fetched.extend(rpaths)
        return real_get(rpaths, lpaths, **kwargs)

    monkeypatch.setattr(fs, "get", counting_get)  # fsspec hands out this same instance
    landing.stage("fhir", "fhir", patterns)
    assert fetched == []  # unchanged: not fetched again
    time.sleep(1.1)  # S3 times are whole seconds
    _put(fs, f"{base}/fhir/a.json", b'{"x": 2}')  # same size, new content and ETag
    fs.rm_file(storage.strip(f"{base}/fhir/sub/b.ndjson"))
    landing.stage("fhir", "fhir", patterns)
    assert fetched == [storage.strip(f"{base}/fhir/a.json")]
    assert (root / "a.json").read_bytes() == b'{"x": 2}'
    assert not (root / "sub" / "b.ndjson").exists()  # the object is gone: so is the copy


def test_ingested_objects_leave_the_landing_cache(s3_home):
    """Once the log holds an object (its URI, size and time), it is neither fetched nor
    kept again: the cache holds what waits to be ingested, not the landing zone."""
    from assets.ehr.fhir import FHIR
    from medlake.ingest import ingest

    fs, base = storage.filesystem(), get_settings().landing_uri
    _put(fs, f"{base}/fhir/p.json", b'{"resourceType": "Bundle", "type": "collection", '
         b'"entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}]}')
    root = landing.stage("fhir", "fhir", FHIR.patterns)
    first = ingest(FHIR, root, batch_id="b1")
    assert first.files_ingested == 1
    assert lake.read("bronze.ingest_log", "SELECT source_uri FROM t").column(0).to_pylist() == [
        f"{base}/fhir/p.json"]
    assert lake.read("bronze.fhir_resources", "SELECT source_uri FROM t").column(0).to_pylist() == [
        f"{base}/fhir/p.json"]
    assert not (landing.stage("fhir", "fhir", FHIR.patterns) / "p.json").exists()
    version = lake.version("bronze.fhir_resources")
    again = ingest(FHIR, root, batch_id="b2")
    assert (again.files_ingested, again.files_quarantined) == (0, 0)
    assert lake.version("bronze.fhir_resources") == version


def test_sensor_scan_sees_new_objects_and_a_batch_stages_only_its_own(s3_home):
    fs, base = storage.filesystem(), get_settings().landing_uri
    _put(fs, f"{base}/vcf/one.vcf", b"##fileformat=VCFv4.2\n")
    where = landing.location("vcf")
    assert where == f"{base}/vcf"
    first = landing.scan(where, ["**/*.vcf"], {}, time.time(), settle_seconds=60)
    assert first.ready == {} and first.waiting == ["one.vcf"]  # just landed: settling
    ready = landing.scan(where, ["**/*.vcf"], {}, time.time() + 120, settle_seconds=60)
    assert list(ready.ready) == ["one.vcf"]
    assert landing.scan(where, ["**/*.vcf"], ready.seen, time.time() + 120, 60).ready == {}
    _put(fs, f"{base}/vcf/two.vcf", b"##fileformat=VCFv4.2\n")
    m = landing.Manifest("vcf-test", "vcf", "vcf", ready.ready)
    assert [p.name for p in m.paths()] == ["one.vcf"]
    assert sorted(p.name for p in (s3_home / "landing_cache" / "vcf").iterdir()) == ["one.vcf"]


def test_glob_patterns_match_like_path_glob(tmp_path):
    for rel in ["a.json", "x/b.json", "x/y/c.json", "d.ndjson", "e.json.gz", "DICOMDIR"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("")
    for pattern in ["**/*.json", "**/*", "*.json", "x/*.json", "**/*.json.gz", "?.ndjson"]:
        local = {p.relative_to(tmp_path).as_posix() for p in tmp_path.glob(pattern) if p.is_file()}
        matched = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")
                   if p.is_file() and landing._glob(pattern).match(p.relative_to(tmp_path).as_posix())}
        assert matched == local, pattern


def test_ann_settings_live_beside_the_vectors_on_s3(s3_home):
    from assets.retrieval import search

    assert search.ann_settings() is None
    storage.write_text(search._settings_path(), '{"nprobes": 8}')
    assert search.ann_settings() == {"nprobes": 8}
    assert search._settings_path().startswith("s3://")


def test_generate_uploads_to_a_landing_zone_on_s3(s3_home, capsys):
    from medlake.cli import main

    assert main(["generate", "--patients", "1", "--seed", "3"]) == 0
    base = get_settings().landing_uri
    assert f"to {base}:" in capsys.readouterr().out
    keys = storage.filesystem().find(storage.strip(base))
    assert {k.split("/")[2] for k in keys} == {"fhir", "dicom", "vcf"}
    assert not (s3_home / "landing").exists()  # generated in a scratch folder, then uploaded


def test_recorded_uris_map_back_to_local_files_staging_objects_again(s3_home, tmp_path):
    """What a file that must land again is read from (ingest's re-landing): an object's
    URI is staged from the landing zone again; a file URI is the file; gone ones drop."""
    from assets.genomics.vcf import VCF

    fs, base = storage.filesystem(), get_settings().landing_uri
    _put(fs, f"{base}/vcf/sub/x.vcf", b"##fileformat=VCFv4.2\n")
    here = tmp_path / "y.vcf"
    here.write_text("y")
    got = landing.local_paths(VCF, [f"{base}/vcf/sub/x.vcf", here.as_uri(), f"{base}/vcf/gone.vcf",
                                    (tmp_path / "gone.vcf").as_uri()])
    staged = s3_home / "landing_cache" / "vcf" / "sub" / "x.vcf"
    assert got == [here, staged]
    assert staged.read_bytes() == b"##fileformat=VCFv4.2\n"
    assert get_settings().source_uri(staged) == f"{base}/vcf/sub/x.vcf"
