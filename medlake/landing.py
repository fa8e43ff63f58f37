"""Watching the landing zone: which files are new or changed and finished arriving, how
they are grouped into ingest batches, and the manifest that records each batch.

Plain functions over the filesystem; the Dagster sensors (orchestration/sensors.py) keep
the `seen` map in their cursor, which Dagster stores, so it survives daemon restarts.

The landing zone may be an s3:// prefix (MEDLAKE_LANDING_URI). Parsers read local files
(cyvcf2 and pydicom want paths; workers hash and re-read them), so before ingestion the
objects not ingested yet are staged (by key, size and ETag) into a local cache,
`MEDLAKE_HOME/landing_cache/`, with each object's time as the file's mtime; the bronze
rows, quarantine entries and ingest log record the object's s3:// URI
(`Settings.source_uri`). From there ingestion is the same code as for a local landing
zone. The sensors list the objects instead of the folder.
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from collections.abc import Iterable, Iterator

from medlake import storage
from medlake.config import get_settings
from medlake.ingest import find_files, ingested

# path (relative to the modality's landing folder) -> [size in bytes, mtime in ns]
Seen = dict[str, list[int]]


@dataclass
class Scan:
    ready: Seen = field(default_factory=dict)  # new or changed, and settled
    waiting: list[str] = field(default_factory=list)  # still being written
    seen: Seen = field(default_factory=dict)  # the cursor to store if `ready` is submitted


def location(folder: str) -> Path | str:
    """Where a modality's files land: a local folder, or an s3:// URI."""
    settings = get_settings()
    if settings.landing_remote:
        return f"{settings.landing_uri.rstrip('/')}/{folder}"
    return settings.landing / folder


@lru_cache(maxsize=64)
def _glob(pattern: str) -> re.Pattern:
    """A `Path.glob` pattern as a regex over a relative key: `**/` is any number of
    folders, none included; `*` and `?` stay within one folder."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        else:
            out, i = out + {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])), i + 1
    return re.compile(out + r"\Z")


def _objects(uri: str, patterns: Iterable[str]) -> dict[str, dict]:
    """The objects under the prefix `uri` matching `patterns`: relative key -> s3fs info."""
    prefix = storage.strip(uri).rstrip("/") + "/"
    found = storage.filesystem().find(prefix, detail=True)
    matchers = [_glob(p) for p in patterns]
    out = {}
    for key, info in found.items():
        rel = key[len(prefix):]
        if rel and not key.endswith("/") and any(m.match(rel) for m in matchers):
            out[rel] = info
    return out


def _mtime_ns(info: dict) -> int:
    """An object's LastModified, in ns since the epoch (S3's times are whole seconds)."""
    return round(info["LastModified"].timestamp() * 1e6) * 1000


def _entries(root: Path | str, patterns: Iterable[str]) -> Iterator[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of the files under `root`, local or s3://."""
    if isinstance(root, str):
        for rel, info in _objects(root, patterns).items():
            yield rel, info["size"], _mtime_ns(info)
        return
    for path in (find_files(root, patterns) if root.is_dir() else []):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        yield path.relative_to(root).as_posix(), st.st_size, st.st_mtime_ns


def scan(root: Path | str, patterns: Iterable[str], seen: Seen, now: float,
         settle_seconds: float, max_files: int = 500) -> Scan:
    """Files under `root` (a folder, or an s3:// prefix: see `location`) whose (size,
    mtime) differ from `seen`, once they have not changed for `settle_seconds` (a copy
    in progress keeps moving its mtime). Files that vanished are dropped from the
    returned `seen`, so if they come back they count as new. At most `max_files` are
    made ready; the rest wait for the next scan."""
    out = Scan()
    for rel, size, mtime_ns in _entries(root, patterns):
        state = [size, mtime_ns]
        if seen.get(rel) == state:
            out.seen[rel] = state
        elif now - mtime_ns / 1e9 < settle_seconds or len(out.ready) >= max_files:
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
        """The batch's files, to be read locally (staged first from object storage)."""
        if get_settings().landing_remote:
            stage(self.modality, self.folder, only=self.files)
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


def stage(modality: str, folder: str, patterns: Iterable[str] = ("**/*",),
          only: Iterable[str] | None = None) -> Path:
    """The local folder a modality's files are ingested from. For a local landing zone
    that is the folder itself. On object storage, the objects under the folder that
    match `patterns` (or just the relative keys `only`) and that the ingest log does not
    hold yet are fetched into the cache, unless a copy with the same size, ETag and time
    is there already. Each copy gets the object's time as mtime, so it is logged with a
    stamp (URI, size, mtime) that the next staging recognises. A full staging (no `only`)
    also removes the copies of objects ingested or gone since, so the cache holds the
    files waiting to be ingested, not the whole landing zone."""
    settings = get_settings()
    root = settings.landing / folder
    if not settings.landing_remote:
        return root
    base = location(folder)
    logged = ingested(modality)[1]
    objects = {rel: info for rel, info in _objects(base, patterns).items()
               if (f"{base}/{rel}", info["size"], _mtime_ns(info)) not in logged}
    if only is not None:
        wanted = set(only)
        objects = {rel: info for rel, info in objects.items() if rel in wanted}
    index_path = settings.landing / f"{folder}.index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    todo = {}
    for rel, info in objects.items():
        state = [info["size"], info.get("ETag"), _mtime_ns(info)]
        local = root / rel
        fresh = (local.is_file() and local.stat().st_size == state[0]
                 and local.stat().st_mtime_ns == state[2])
        if index.get(rel) != state or not fresh:
            todo[rel] = state
    if todo:
        storage.fetch({f"{base}/{rel}": root / rel for rel in todo},
                      {f"{base}/{rel}": state[2] for rel, state in todo.items()})
        index.update(todo)
    if only is None:  # copies of ingested or deleted objects, and leftover parts, go
        index = {rel: state for rel, state in index.items() if rel in objects}
        copies = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
        for path in copies:
            if path.relative_to(root).as_posix() not in objects:
                path.unlink(missing_ok=True)
    if todo or only is None:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(json.dumps(index, sort_keys=True))
        tmp.replace(index_path)
    return root


def local_paths(modality, uris: Iterable[str]) -> list[Path]:
    """Local files for landing files recorded under `uris` (as `Settings.source_uri`
    writes them): file URIs as they are, objects staged again from the landing zone.
    Files that are gone are left out."""
    settings = get_settings()
    prefix = settings.landing_uri.rstrip("/") + "/"
    out, remote = [], {}
    for uri in uris:
        if settings.landing_remote and uri.startswith(prefix):
            folder, rel = uri[len(prefix):].split("/", 1)
            remote.setdefault(folder, []).append(rel)
        else:
            out.append(storage.local_path(uri))
    for folder, rels in remote.items():
        root = stage(modality.name, folder, modality.patterns, only=rels)
        out += [root / rel for rel in rels]
    return [p for p in out if p.is_file()]


def publish(src: Path) -> list[str]:
    """Upload every file under `src` to the landing zone on object storage, keeping
    relative paths (`medlake generate` with an s3:// landing zone); returns the URIs."""
    settings = get_settings()
    base = settings.landing_uri.rstrip("/")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    uris = [f"{base}/{p.relative_to(src).as_posix()}" for p in files]
    if files:
        storage.filesystem().put([str(p) for p in files], [storage.strip(u) for u in uris])
    return uris
