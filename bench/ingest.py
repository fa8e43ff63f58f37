"""Bronze FHIR ingestion throughput against the parse floor, at two sizes, as Bundles and
as bulk-export NDJSON.

The floor is orjson parsing the same files in the same run: ingestion cannot be faster
than reading the JSON, so the ratio says what hashing, flattening and the Delta MERGE
cost on top. Run: `make bench` (or `.venv/bin/python bench/ingest.py [patients ...]`).
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import orjson


def parse_floor(files: list[Path]) -> float:
    """orjson reading every file: whole for a Bundle, line by line for NDJSON."""
    t = time.perf_counter()
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".ndjson":
            for line in data.splitlines():
                if line.strip():
                    orjson.loads(line)
        else:
            orjson.loads(data)
    return time.perf_counter() - t


def one_size(patients: int, ndjson: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        os.environ.pop("MEDLAKE_LAKE_URI", None)
        from assets.ehr.fhir import FHIR
        from medlake.generate import generate
        from medlake.ingest import ingest

        generate(Path(tmp) / "landing", patients=patients, seed=1, ndjson=ndjson)
        files = sorted((Path(tmp) / "landing" / "fhir").glob("**/*.ndjson" if ndjson else "*.json"))
        mb = sum(f.stat().st_size for f in files) / 1e6
        floor = min(parse_floor(files) for _ in range(3))
        t = time.perf_counter()
        summary = ingest(FHIR, Path(tmp) / "landing" / "fhir", "bench")
        full = time.perf_counter() - t
        t = time.perf_counter()
        again = ingest(FHIR, Path(tmp) / "landing" / "fhir", "bench-2")
        rerun = time.perf_counter() - t
        assert again.files_skipped == len(files)
        return dict(patients=patients, form="NDJSON" if ndjson else "Bundles", mb=mb, rows=summary.rows["bronze.fhir_resources"],
                    floor_mbs=mb / floor, ingest_mbs=mb / full, ratio=full / floor,
                    rerun_s=rerun, full_s=full)


def main(sizes: list[int]) -> None:
    # deltalake imports pandas on its first write (~0.6 s): a cost of process start-up,
    # paid once by a Dagster code server, not per ingested batch.
    import pandas  # noqa: F401
    # Likewise DuckDB's first query (~0.3 s) and delta-rs's first commit: one throwaway
    # ingest of two patients warms the process, so the sizes compare throughput, not
    # which of them ran first.
    one_size(2)

    print(f"{'patients':>8} {'form':>8} {'MB':>7} {'rows':>8} {'orjson MB/s':>12} {'ingest MB/s':>12} "
          f"{'ingest/floor':>13} {'unchanged re-run s':>19}")
    results = [one_size(n, ndjson) for ndjson in (False, True) for n in sizes]
    for r in results:
        print(f"{r['patients']:>8} {r['form']:>8} {r['mb']:>7.1f} {r['rows']:>8} {r['floor_mbs']:>12.1f} "
              f"{r['ingest_mbs']:>12.1f} {r['ratio']:>12.1f}x {r['rerun_s']:>19.2f}")
    for form in ("Bundles", "NDJSON"):
        same = [r for r in results if r["form"] == form]
        if len(same) > 1:
            a, b = same[0], same[-1]
            print(f"{form}: {b['mb'] / a['mb']:.1f}x the data took {b['full_s'] / a['full_s']:.1f}x "
                  f"the time (linear growth would be {b['mb'] / a['mb']:.1f}x).")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 400])
