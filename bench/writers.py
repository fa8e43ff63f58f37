"""Bronze ingest throughput with 1, 2 and 4 writer processes, on local disk and on a
loopback S3 API server (moto's, in a process of its own), for the same generated files
(every modality), dealt round-robin into one batch per process and started together
(medlake/parallel.py).

With one process and MEDLAKE_BRONZE_WRITERS=1, new keys are appended; with more, every
write is a MERGE and conflicts are retried, so a fourth line shows one process with
MERGEs only: what the MERGEs cost apart from the contention. Each lake is checked against
the one-writer lake on the same storage (same rows, no key twice). Prints rows/s, the ratio
to one writer and the commit retries, for each storage.

The landing files stay on local disk for both, so the S3 figures are what the lake's
commits and data files cost over S3 (staging a landing zone from S3 is a separate step).

Run: `make bench` (or `.venv/bin/python bench/writers.py [--patients 60] [--rounds 2]
[--storage local s3]`).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medlake import lake, parallel, verify  # noqa: E402


SETUPS = [(1, 1), (1, 4), (2, 2), (4, 4)]  # (processes, MEDLAKE_BRONZE_WRITERS)


def s3_lake(endpoint: str, bucket: str) -> str:
    """A new bucket on the S3 API server at `endpoint`, with the environment pointing at
    it (the writer processes inherit it); its lake URI."""
    from tests.s3_server import CREDENTIALS, create_bucket

    os.environ.update(AWS_ENDPOINT_URL=endpoint, **CREDENTIALS)
    create_bucket(endpoint, bucket)
    return f"s3://{bucket}/lake"


def one(landing: Path, home: Path, lake_uri: str, processes: int, writers: int,
        chunk_files: int | None) -> dict:
    os.environ.update(MEDLAKE_HOME=str(home), MEDLAKE_LAKE_URI=lake_uri,
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
    p.add_argument("--storage", nargs="+", choices=("local", "s3"), default=["local", "s3"])
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="medlake-writers-") as tmp, ExitStack() as stack:
        from medlake.generate import generate

        landing = Path(tmp) / "landing"
        r = generate(landing, patients=args.patients, seed=3, bad_files=True)
        print(f"{args.patients} patients: {r.fhir_files} FHIR, {r.dicom_files} DICOM, "
              f"{r.vcf_files} VCF files; {args.rounds} rounds, best kept", flush=True)
        endpoint = None
        if "s3" in args.storage:
            from tests.s3_server import S3Server

            endpoint = stack.enter_context(S3Server())
            print(f"S3 API server (moto) at {endpoint}", flush=True)
        best: dict[tuple, dict] = {}
        for rnd in range(args.rounds):  # rounds interleave every setup, so load drifts hit all
            for where in args.storage:
                for procs, writers in SETUPS:
                    name = f"lake-{rnd}-{procs}-{writers}"
                    lake_uri = (s3_lake(endpoint, name) if where == "s3"
                                else str(Path(tmp) / name / "lake"))
                    got = one(landing, Path(tmp) / where / name, lake_uri, procs, writers,
                              args.chunk_files)
                    if got["problems"]:
                        raise RuntimeError(f"{where}, {procs} processes: {got['problems']}")
                    print(f"  round {rnd + 1}, {where}: {procs} process(es), writers={writers}: "
                          f"{got['seconds']:.2f} s ({got['cpu']:.2f} CPU-s), {got['retries']} retries",
                          flush=True)
                    key = (where, procs, writers)
                    runs = best.get(key, {}).get("retries_all", []) + [got["retries"]]
                    if key not in best or got["seconds"] < best[key]["seconds"]:
                        best[key] = got
                    best[key]["retries_all"] = runs
        print(f"\n{'storage':>7}  {'processes':>9}  {'setting':>7}  {'rows':>7}  {'seconds':>7}  "
              f"{'CPU-s':>6}  {'rows/s':>8}  {'vs 1':>5}  {'vs local':>8}  retries per round  "
              "same rows as 1 writer")
        for where in args.storage:
            base = best[(where, 1, 1)]
            for procs, writers in SETUPS:
                b = best[(where, procs, writers)]
                same = b["snapshot"] == base["snapshot"]
                local = best.get(("local", procs, writers))
                vs_local = f"{local['seconds'] / b['seconds']:>8.2f}" if local else f"{'-':>8}"
                print(f"{where:>7}  {procs:>9}  {writers:>7}  {b['rows']:>7}  {b['seconds']:>7.2f}  "
                      f"{b['cpu']:>6.2f}  {b['rows'] / b['seconds']:>8.0f}  "
                      f"{base['seconds'] / b['seconds']:>5.2f}  {vs_local}  "
                      f"{str(b['retries_all']):>17}  {'yes' if same else 'NO'}")
        if len(args.storage) == 2:
            same = all(best[("s3", *s)]["snapshot"] == best[("local", *s)]["snapshot"] for s in SETUPS)
            print(f"\nS3 lakes hold the same rows as the local ones: {'yes' if same else 'NO'}")


if __name__ == "__main__":
    main()
