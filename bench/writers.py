"""Bronze ingest throughput with 1, 2 and 4 writer processes on local disk, for the same
generated files (every modality), dealt round-robin into one batch per process and
started together (medlake/parallel.py).

With one process and MEDLAKE_BRONZE_WRITERS=1, new keys are appended; with more, every
write is a MERGE and conflicts are retried, so a fourth line shows one process with
MERGEs only: what the MERGEs cost apart from the contention. Each lake is checked against
the one-writer lake (same rows, no key twice). Prints rows/s, the ratio to one writer
and the commit retries.

Run: `make bench` (or `.venv/bin/python bench/writers.py [--patients 60] [--rounds 2]`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medlake import lake, parallel, verify  # noqa: E402


def one(landing: Path, home: Path, processes: int, writers: int, chunk_files: int | None) -> dict:
    os.environ.update(MEDLAKE_HOME=str(home), MEDLAKE_LAKE_URI=str(home / "lake"),
                      MEDLAKE_BRONZE_WRITERS=str(writers))
    got = parallel.run_writers(parallel.split(parallel.landing_files(landing), processes), chunk_files)
    if got["errors"]:
        raise RuntimeError(got["errors"])
    rows = sum(lake.stats(t)["rows"] for t in verify.tables(("bronze",)))
    return dict(seconds=got["seconds"], cpu=got["cpu_seconds"], rows=rows, retries=got["commit_retries"],
                snapshot=verify.snapshot(("bronze",)), problems=verify.check(("bronze",)))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each setup's best is kept")
    p.add_argument("--chunk-files", type=int, default=None, help="files per commit (default: the modality's)")
    args = p.parse_args()
    setups = [(1, 1), (1, 4), (2, 2), (4, 4)]  # (processes, MEDLAKE_BRONZE_WRITERS)
    with tempfile.TemporaryDirectory(prefix="medlake-writers-") as tmp:
        from medlake.generate import generate

        landing = Path(tmp) / "landing"
        r = generate(landing, patients=args.patients, seed=3, bad_files=True)
        print(f"{args.patients} patients: {r.fhir_files} FHIR, {r.dicom_files} DICOM, "
              f"{r.vcf_files} VCF files; {args.rounds} rounds, best kept", flush=True)
        best: dict[tuple, dict] = {}
        for rnd in range(args.rounds):
            for procs, writers in setups:
                got = one(landing, Path(tmp) / f"lake-{rnd}-{procs}-{writers}", procs, writers,
                          args.chunk_files)
                if got["problems"]:
                    raise RuntimeError(f"{procs} processes: {got['problems']}")
                print(f"  round {rnd + 1}: {procs} process(es), writers={writers}: "
                      f"{got['seconds']:.2f} s ({got['cpu']:.2f} CPU-s), {got['retries']} retries",
                      flush=True)
                key = (procs, writers)
                if key not in best or got["seconds"] < best[key]["seconds"]:
                    best[key] = {**got, "retries_all": best.get(key, {}).get("retries_all", []) + [got["retries"]]}
                else:
                    best[key]["retries_all"].append(got["retries"])
        base = best[(1, 1)]
        print(f"\n{'processes':>9}  {'setting':>7}  {'rows':>7}  {'seconds':>7}  {'CPU-s':>6}  "
              f"{'rows/s':>8}  {'vs 1':>5}  retries per round  same rows as 1 writer")
        for procs, writers in setups:
            b = best[(procs, writers)]
            same = b["snapshot"] == base["snapshot"]
            print(f"{procs:>9}  {writers:>7}  {b['rows']:>7}  {b['seconds']:>7.2f}  {b['cpu']:>6.2f}  "
                  f"{b['rows'] / b['seconds']:>8.0f}  {base['seconds'] / b['seconds']:>5.2f}  "
                  f"{str(b['retries_all']):>17}  {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
