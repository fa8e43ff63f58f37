"""Silver + OMOP gold build time (dbt) for generated patients, against the floor of the
same run, at two sizes.

The floor is DuckDB running the compiled SQL-on-FHIR views alone over the same bronze
snapshot (the flattening every silver table starts from), fetched to Arrow. The build is
`dbt run` of every EHR silver and gold model: views, de-identification (Python UDFs for
pseudonyms and scrubbing), the OMOP joins, Parquet staging and the Delta commits. The
ratio says what dbt, de-identification and Delta add on top of flattening.

Run: `make bench` (or `.venv/bin/python bench/ehr_build.py [patients ...]`).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = ["gold_person", "gold_visit_occurrence", "gold_condition_occurrence",
          "gold_drug_exposure", "gold_measurement", "gold_observation",
          "gold_procedure_occurrence", "gold_note", "silver_diagnostic_report",
          "silver_imaging_study_fhir"]


def views_floor() -> float:
    """Seconds for DuckDB to evaluate every ViewDefinition over bronze.fhir_resources."""
    import duckdb

    from medlake import lake
    from medlake.dbt_plugin import SOF_CARRY, VIEWS_DIR
    from medlake.sof import compile_view, load_view

    con = duckdb.connect()
    con.execute("CREATE SCHEMA bronze")
    con.execute("CREATE VIEW bronze.fhir_resources AS SELECT * FROM "
                + lake.scan_sql(lake.open_table("bronze.fhir_resources")))
    sqls = [compile_view(load_view(p), carry=SOF_CARRY) for p in sorted(VIEWS_DIR.glob("*.json"))]
    t = time.perf_counter()
    for sql in sqls:
        con.sql(sql).to_arrow_table()
    return time.perf_counter() - t


def one_size(patients: int) -> dict:
    from orchestration.resources import DBT_DIR, dbt_executable

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp) / "lake")
        from assets.ehr.fhir import FHIR
        from medlake import lake
        from medlake.generate import generate
        from medlake.ingest import ingest

        generate(Path(tmp) / "landing", patients=patients, seed=1)
        ingest(FHIR, Path(tmp) / "landing" / "fhir", "bench")
        resources = lake.read("bronze.fhir_resources", "SELECT count(*) FROM t").column(0)[0].as_py()
        floor = min(views_floor() for _ in range(2))
        where = ["--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
                 "--target-path", str(Path(tmp) / "target"), "--log-path", str(Path(tmp) / "logs")]
        subprocess.run([dbt_executable(), "seed", "--quiet", *where], check=True, capture_output=True)
        cmd = [dbt_executable(), "run", "--quiet", "--select", *[f"+{m}" for m in MODELS], *where]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        build = time.perf_counter() - t
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        rebuild = time.perf_counter() - t
        rows = sum(lake.read(t, "SELECT count(*) FROM t").column(0)[0].as_py()
                   for t in lake.list_tables("silver") + lake.list_tables("gold"))
        return dict(patients=patients, resources=resources, rows=rows, floor_s=floor,
                    build_s=build, rebuild_s=rebuild)


def main(sizes: list[int]) -> None:
    print(f"{'patients':>8} {'resources':>10} {'rows out':>9} {'views floor s':>14} "
          f"{'dbt build s':>12} {'build/floor':>12} {'unchanged rebuild s':>20}")
    results = [one_size(n) for n in sizes]
    for r in results:
        print(f"{r['patients']:>8} {r['resources']:>10} {r['rows']:>9} {r['floor_s']:>14.2f} "
              f"{r['build_s']:>12.1f} {r['build_s'] / r['floor_s']:>11.1f}x {r['rebuild_s']:>20.1f}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        grow = b["resources"] / a["resources"]
        print(f"\n{grow:.1f}x the resources took {b['build_s'] / a['build_s']:.1f}x the build time "
              f"and {b['floor_s'] / a['floor_s']:.1f}x the views floor (linear would be {grow:.1f}x; "
              "dbt's fixed start-up cost makes small builds look expensive).")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000])
