"""Lake operations the orchestration relies on: concurrent writers and nightly maintenance."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa

from medlake import lake, maintenance

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = pa.schema([("id", pa.int64()), ("writer", pa.string()), ("n", pa.int64())])

WRITER = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from medlake import lake
    name, start = sys.argv[1], int(sys.argv[2])
    schema = pa.schema([("id", pa.int64()), ("writer", pa.string()), ("n", pa.int64())])
    for i in range(12):
        # Each batch: 20 keys of its own and 5 keys the other writer also writes.
        ids = list(range(start + i * 20, start + i * 20 + 20)) + list(range(i * 5, i * 5 + 5))
        rows = [{"id": k, "writer": name, "n": i} for k in ids]
        lake.merge("bronze.contended", pa.Table.from_pylist(rows, schema), ["id"],
                   update_when="s.n > t.n", retries=12)
    print("done")
""")


def test_two_processes_merging_into_one_table_do_not_corrupt_it(home):
    lake.ensure("bronze.contended", SCHEMA)
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, name, str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, start in (("a", 10_000), ("b", 20_000))]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-2000:]
    got = lake.read("bronze.contended", "SELECT count(*), count(DISTINCT id), "
                    "count(*) FILTER (WHERE id < 10000) FROM t").to_pylist()[0]
    total, distinct, shared = got.values()
    # 2 writers x 12 batches x 20 own keys, plus the 60 shared keys: each exactly once.
    assert (total, distinct, shared) == (2 * 12 * 20 + 60, 2 * 12 * 20 + 60, 60)
    # Every commit is a readable version: time travel to each one works.
    last = lake.version("bronze.contended")
    counts = [lake.read("bronze.contended", "SELECT count(*) FROM t", version=v)
              .column(0)[0].as_py() for v in range(last + 1)]
    assert counts == sorted(counts) and counts[-1] == total


def test_maintenance_compacts_keeps_time_travel_and_is_idempotent(home):
    for i in range(4):
        lake.merge("silver.small", pa.Table.from_pylist(
            [{"id": i, "writer": "x", "n": i}], SCHEMA), ["id"])
    dt = lake.open_table("silver.small")
    files_before, version_before = len(dt.file_uris()), dt.version()
    r = maintenance.maintain_table("silver.small", retention_days=30)
    assert r["files_compacted"] == files_before and r["files_written"] == 1
    assert len(lake.open_table("silver.small").file_uris()) == 1
    assert r["files_vacuumed"] == 0  # the replaced files are younger than 30 days
    # Audits can still read the first version.
    assert lake.read("silver.small", "SELECT count(*) FROM t", version=1).column(0)[0].as_py() == 1
    assert lake.read("silver.small", "SELECT count(*) FROM t").column(0)[0].as_py() == 4
    again = maintenance.maintain_table("silver.small", retention_days=30)
    assert again["version_before"] == again["version_after"] == version_before + 1
    assert maintenance.maintain_table("silver.absent", 30) == {"table": "silver.absent",
                                                               "exists": False}


def test_a_rebuild_after_maintenance_commits_nothing(home):
    """Maintenance commits (OPTIMIZE, VACUUM) carry no content fingerprint; a dbt rebuild
    on unchanged input must look past them and still commit nothing."""
    one = pa.Table.from_pylist([{"id": 1, "writer": "x", "n": 1}], SCHEMA)
    two = pa.Table.from_pylist([{"id": 2, "writer": "x", "n": 2}], SCHEMA)
    lake.replace_if_changed("gold.derived", one, "fp-1")
    lake.replace_if_changed("gold.derived", two, "fp-2")  # leaves one unreferenced file
    lake.open_table("gold.derived").vacuum(retention_hours=0, dry_run=False,
                                           enforce_retention_duration=False)
    v = lake.version("gold.derived")
    assert [c["operation"] for c in lake.open_table("gold.derived").history(1)] == ["VACUUM END"]
    assert lake.replace_if_changed("gold.derived", two, "fp-2").version == v
    assert lake.replace_if_changed("gold.derived", one, "fp-1").version == v + 1
