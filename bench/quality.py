"""Validation engines on a large table: GX pandas against the same suite pushed into
DuckDB, at two sizes (default 100k and 1M rows), and GX's SQL datasource on DuckDB.

The table is observation-shaped (key, person_key, LOINC code, value, status, date) with
a suite of the usual kinds: not null, unique, value set, range, regex, and the
person_key integrity rule against silver.patient. Both engines validate the same Delta
version and must agree on every expectation. The raw floor is DuckDB counting the rows
of the Delta files. Run: `make bench` (or `.venv/bin/python bench/quality.py [rows ...]`).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/quality.py`, this file's folder comes first on sys.path and its
# name would hide the `quality` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

TABLE = "silver.bench_observation"
SUITE = [
    ("ExpectColumnValuesToNotBeNull", {"column": "observation_id"}, "error"),
    ("ExpectColumnValuesToBeUnique", {"column": "observation_id"}, "error"),
    ("ExpectColumnValuesToNotBeNull", {"column": "person_key"}, "error"),
    ("ExpectColumnValuesToBeInSet", {"column": "status", "value_set":
                                     ["final", "amended", "corrected", "preliminary"]}, "warn"),
    ("ExpectColumnValuesToBeBetween", {"column": "value", "min_value": 0, "max_value": 300}, "warn"),
    ("ExpectColumnValuesToMatchRegex", {"column": "code", "regex": "^[0-9]+-[0-9]$"}, "warn"),
]


def build(rows: int) -> None:
    import duckdb
    from deltalake import write_deltalake

    from medlake import lake

    con = duckdb.connect()
    people = con.sql("SELECT md5(i::VARCHAR)[:32] AS person_key FROM range(10000) r(i)").to_arrow_table()
    obs = con.sql(f"""
        SELECT md5('o' || i::VARCHAR) AS observation_id,
               md5((i % 10000)::VARCHAR)[:32] AS person_key,
               ['8867-4', '8480-6', '8462-4', '8310-5', '9279-1'][1 + i % 5] AS code,
               (i % 250)::DOUBLE AS value,
               ['final', 'amended', 'preliminary'][1 + i % 3] AS status,
               DATE '2020-01-01' + (i % 1500)::INTEGER AS effective_date
        FROM range({rows}) r(i)""").to_arrow_table()
    con.close()
    write_deltalake(lake.uri("silver.patient"), people, mode="overwrite")
    write_deltalake(lake.uri(TABLE), obs, mode="overwrite")


def floor() -> float:
    import duckdb

    from medlake import lake

    t = time.perf_counter()
    con = duckdb.connect()
    con.execute(f"SELECT count(*) FROM {lake.scan_sql(lake.open_table(TABLE))}").fetchall()
    con.close()
    return time.perf_counter() - t


def gx_sql_works() -> str:
    """Whether GX's own SQL datasource can validate on DuckDB (duckdb-engine) here."""
    from quality.gx_runner import _context, _scan

    try:
        import duckdb_engine  # noqa: F401
    except ImportError:
        return "not tried (duckdb-engine is not installed: pip install -e '.[dev]')"
    gx, context = _context()
    source = context.data_sources.add_or_update_sql("bench_duckdb", connection_string="duckdb:///:memory:")
    asset = source.add_query_asset(name="bench", query=f"SELECT * FROM {_scan(TABLE)} AS t LIMIT 1000")
    r = asset.add_batch_definition_whole_table("all").get_batch().validate(
        gx.expectations.ExpectColumnValuesToNotBeNull(column="observation_id"))
    if r.success:
        return "works"
    err = next(iter((r.exception_info or {}).values()), {}).get("exception_message", "failed")
    return f"fails ({err}: GX closes its connection before fetching; DuckDB 2 drops the result)"


def one_size(rows: int) -> dict:
    from quality.gx_runner import run_suite
    from quality.suites import Expectation

    build(rows)
    suite = [Expectation(t, kw, sev) for t, kw, sev in SUITE]
    out = {"rows": rows, "floor": min(floor() for _ in range(2))}
    results = {}
    for engine in ("duckdb", "pandas"):
        best = None
        for _ in range(2 if rows <= 200_000 else 1):
            r = run_suite(TABLE, engine=engine, record=False, docs=False, suite=suite)
            best = r if best is None or r.seconds < best.seconds else best
        out[engine] = best.seconds
        results[engine] = [o.success for o in best.outcomes]
    out["agree"] = results["duckdb"] == results["pandas"]
    return out


def main(sizes: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        os.environ.pop("MEDLAKE_LAKE_URI", None)
        print(f"Validation of {len(SUITE)} expectations + person_key integrity + row-count "
              "drift, one Delta version, 2-core machine:")
        print(f"{'rows':>9}  {'GX pandas s':>11}  {'DuckDB s':>8}  {'pandas/DuckDB':>13}  "
              f"{'raw scan s':>10}  agree")
        for n in sizes:
            r = one_size(n)
            print(f"{r['rows']:>9}  {r['pandas']:>11.2f}  {r['duckdb']:>8.2f}  "
                  f"{r['pandas'] / r['duckdb']:>12.1f}x  {r['floor']:>10.3f}  {r['agree']}")
        print(f"GX SQL datasource on DuckDB (duckdb-engine): {gx_sql_works()}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
