"""Nightly housekeeping for the lake: compact small Delta files, vacuum files no version
within the retention window needs, and compact LanceDB.

The retention (MEDLAKE_VACUUM_RETENTION_DAYS, default 30) is how far back time travel
keeps working, which is what audits and cited answers (`silver.document v<N>`) rely on;
vacuum never removes a file a version inside that window reads.

With the lake on object storage, the local copies DuckDB reads its data files from are
pruned too: those unused for MEDLAKE_LAKE_CACHE_DAYS go (a later read fetches them again).
"""
from __future__ import annotations

from datetime import timedelta

from medlake import lake, storage
from medlake.config import get_settings, is_remote


def maintain_table(table: str, retention_days: int) -> dict:
    """Compact, then vacuum, one Delta table. Neither commits when there is nothing to do,
    so a maintained table keeps its version."""
    dt = lake.open_table(table)
    if dt is None:
        return {"table": table, "exists": False}
    before = dt.version()
    compacted = dt.optimize.compact()
    dt = lake.open_table(table)
    removed = dt.vacuum(retention_hours=retention_days * 24, dry_run=False)
    return {"table": table, "exists": True, "version_before": before,
            "version_after": lake.open_table(table).version(),
            "files_compacted": compacted.get("numFilesRemoved", 0),
            "files_written": compacted.get("numFilesAdded", 0),
            "files_vacuumed": len(removed)}


def maintain_layers(layers: list[str], retention_days: int) -> list[dict]:
    done = [maintain_table(t, retention_days) for layer in layers for t in lake.list_tables(layer)]
    settings = get_settings()
    if is_remote(settings.lake_uri):
        for layer in layers:
            folder = storage.strip(settings.table_uri(f"{layer}.x")).rsplit("/", 1)[0]
            storage.prune_cache(settings.lake_cache_days, under=folder)
    return done


def maintain_vectors(tbl, retention_days: int) -> dict:
    """Compact a LanceDB table's fragments and drop versions older than the retention."""
    if tbl is None:
        return {"exists": False}
    before = tbl.version
    tbl.optimize(cleanup_older_than=timedelta(days=retention_days))
    return {"exists": True, "version_before": before, "version_after": tbl.version,
            "rows": tbl.count_rows()}
