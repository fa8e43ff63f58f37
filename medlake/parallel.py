"""Several ingest processes writing one lake at once, as Dagster runs them when the
lake_bronze pool allows more than one (MEDLAKE_BRONZE_WRITERS): for the concurrency
test and the writer-throughput bench.

Each process ingests its own batch (files per modality) after all have started, so
their writes overlap instead of one finishing while the next still imports.
"""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import asdict
from pathlib import Path

MODALITIES = ("fhir", "dicom", "vcf")


def modality(name: str):
    """The Modality called `name` (imported here: a spawned process starts bare)."""
    if name == "fhir":
        from assets.ehr.fhir import FHIR
        return FHIR
    if name == "dicom":
        from assets.imaging.dicom import DICOM
        return DICOM
    if name == "vcf":
        from assets.genomics.vcf import VCF
        return VCF
    raise ValueError(f"unknown modality {name!r}; expected one of {', '.join(MODALITIES)}")


def landing_files(landing: Path) -> dict[str, list[Path]]:
    """Every landing file of each modality, in the order ingest takes them."""
    from medlake.ingest import find_files

    out = {}
    for name in MODALITIES:
        root = landing / name
        out[name] = find_files(root.resolve(), modality(name).patterns) if root.exists() else []
    return out


def split(files: dict[str, list[Path]], n: int) -> list[dict[str, list[Path]]]:
    """`files` dealt round-robin into `n` batches (every modality spread over all)."""
    return [{name: paths[i::n] for name, paths in files.items()} for i in range(n)]


def ingest_batch(batch: dict[str, list[Path]], batch_id: str,
                 chunk_files: int | None = None) -> list[dict]:
    """Ingest one batch's files, modality by modality, in this process (the modalities
    of an ingest run are separate Dagster assets too); each IngestSummary as a dict."""
    from medlake.ingest import ingest

    out = []
    for name, paths in batch.items():
        if paths:
            summary = ingest(modality(name), Path("."), batch_id, files=paths,
                             chunk_files=chunk_files, workers=1)
            out.append(asdict(summary))
    return out


def _worker(batch, batch_id, chunk_files, barrier, results) -> None:
    # Imported before the common start: a Dagster run's process has its code loaded
    # before it ingests (pandas: deltalake imports it on its first write).
    import pandas  # noqa: F401

    from medlake import ingest, lake  # noqa: F401
    for name in batch:
        modality(name)

    out = dict(batch_id=batch_id, start=time.time(), cpu=time.process_time(), summaries=[], error=None)
    try:
        barrier.wait(timeout=300)
        out.update(start=time.time(), cpu=time.process_time())
        out["summaries"] = ingest_batch(batch, batch_id, chunk_files)
    except BaseException as e:  # reported, so the parent never waits for a dead worker
        out["error"] = f"{type(e).__name__}: {e}"
    out.update(end=time.time(), cpu=time.process_time() - out["cpu"])
    results.put(out)


def run_writers(batches: list[dict[str, list[Path]]], chunk_files: int | None = None,
                timeout_s: float = 600) -> dict:
    """Ingest each batch in a process of its own, all at once (the environment, e.g.
    MEDLAKE_HOME and MEDLAKE_BRONZE_WRITERS, is inherited). Returns the wall time from the
    common start to the last finish, the CPU time the processes spent meanwhile, each
    process's summaries, the commit retries they made, and their errors."""
    ctx = multiprocessing.get_context("spawn")  # a fork would copy Delta's thread locks
    barrier, results = ctx.Barrier(len(batches)), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(b, f"writer-{i}", chunk_files, barrier, results))
             for i, b in enumerate(batches)]
    for p in procs:
        p.start()
    got = []
    try:
        for _ in procs:
            got.append(results.get(timeout=timeout_s))
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    summaries = {g["batch_id"]: g["summaries"] for g in got}
    return {
        "seconds": max(g["end"] for g in got) - min(g["start"] for g in got),
        "cpu_seconds": sum(g["cpu"] for g in got),
        "summaries": summaries,
        "commit_retries": sum(s["commit_retries"] for ss in summaries.values() for s in ss),
        "errors": [f"{g['batch_id']}: {g['error']}" for g in got if g["error"]],
    }
