"""Watching the landing zone: which files are new or changed and finished arriving, how
they are grouped into ingest batches, and the manifest that records each batch.

Plain functions over the filesystem; the Dagster sensors (orchestration/sensors.py) keep
the `seen` map in their cursor, which Dagster stores, so it survives daemon restarts.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Iterable

from medlake.config import get_settings
from medlake.ingest import find_files

# path (relative to the modality's landing folder) -> [size in bytes, mtime in ns]
Seen = dict[str, list[int]]


@dataclass
class Scan:
    ready: Seen = field(default_factory=dict)  # new or changed, and settled
    waiting: list[str] = field(default_factory=list)  # still being written
    seen: Seen = field(default_factory=dict)  # the cursor to store if `ready` is submitted


def scan(root: Path, patterns: Iterable[str], seen: Seen, now: float, settle_seconds: float,
         max_files: int = 500) -> Scan:
    """Files under `root` whose (size, mtime) differ from `seen`, once they have not
    changed for `settle_seconds` (a copy in progress keeps moving its mtime). Files that
    vanished are dropped from the returned `seen`, so if they come back they count as new.
    At most `max_files` are made ready; the rest wait for the next scan."""
    out = Scan()
    for path in (find_files(root, patterns) if root.is_dir() else []):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        rel = path.relative_to(root).as_posix()
        state = [st.st_size, st.st_mtime_ns]
        if seen.get(rel) == state:
            out.seen[rel] = state
        elif now - st.st_mtime < settle_seconds or len(out.ready) >= max_files:
            out.waiting.append(rel)
            if rel in seen:  # keep the old state so it is not reported as new twice
                out.seen[rel] = seen[rel]
        else:
            out.ready[rel] = state
            out.seen[rel] = state
    return out


def batch_id(modality: str, files: Seen, now: float) -> str:
    """`<modality>-<UTC time>-<digest of the files' states>`: readable in the UI, and the
    same files in the same second give the same id (so the run key dedupes)."""
    stamp = datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    digest = hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()[:8]
    return f"{modality}-{stamp}-{digest}"


def manifest_path(batch: str) -> Path:
    return get_settings().home / "batches" / f"{batch}.json"


@dataclass
class Manifest:
    batch_id: str
    modality: str
    folder: str
    files: Seen

    def paths(self) -> list[Path]:
        root = get_settings().landing / self.folder
        return [root / rel for rel in sorted(self.files)]


def write_manifest(m: Manifest) -> Path:
    """Record which files make up a batch, so a re-run or a backfill of the batch's
    partition ingests exactly those files. Written atomically."""
    path = manifest_path(m.batch_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"batch_id": m.batch_id, "modality": m.modality,
                               "folder": m.folder, "files": m.files}, indent=1))
    tmp.replace(path)
    return path


def read_manifest(batch: str) -> Manifest:
    path = manifest_path(batch)
    if not path.exists():
        raise FileNotFoundError(
            f"No manifest for ingest batch {batch!r} at {path}. Batches are created by the "
            "landing sensors; to ingest everything new instead, run the job refresh_all.")
    d = json.loads(path.read_text())
    return Manifest(d["batch_id"], d["modality"], d["folder"], d["files"])
