"""Files on object storage, for the code that handles them as files rather than through
delta-rs or LanceDB (which take `Settings.storage_options`): the lake's Parquet that
DuckDB reads, the landing zone, small side files beside the vectors.

DuckDB reads an object store's Delta data files from a local read-through cache. Its
httpfs extension cannot be installed offline, and through an fsspec filesystem each
file opened costs a HEAD and several ranged GETs, again in every query: 60-100 ms per
file against moto on a 2-core machine, and the demo pipeline took 2-3 times as long as on
local disk (with this cache, about 1.2 times). A Delta data file is never changed once
written (a new version writes new files under new names), so a copy fetched once stays
right for as long as it is kept. Local paths keep their plain local code, so a local
lake works and performs exactly as before.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

import fsspec

from medlake.config import Settings, get_settings, is_remote

DAY = 86_400.0


def filesystem(settings: Settings | None = None) -> fsspec.AbstractFileSystem:
    """The s3fs filesystem for the configured S3 endpoint and credentials (fsspec keeps
    one instance per configuration, so this is cheap to call)."""
    settings = settings or get_settings()
    return fsspec.filesystem("s3", **settings.s3.fsspec())


def strip(uri: str) -> str:
    """`s3://bucket/key` -> `bucket/key`, the form fsspec's methods take."""
    return uri.split("://", 1)[1] if "://" in uri else uri


def local_path(uri: str) -> Path:
    """The local file a path or file:// URI names."""
    return Path(unquote(urlparse(uri).path)) if uri.startswith("file:") else Path(uri)


def fetch(copies: dict[str, Path], mtimes_ns: dict[str, int] | None = None) -> None:
    """Fetch objects (URI -> local path) side by side, each under a temporary name that
    is then renamed, so a reader never sees half a file; with `mtimes_ns` (by URI), each
    copy gets its object's time."""
    temps = {uri: path.with_name(f".{path.name}.{uuid.uuid4().hex}.part")
             for uri, path in copies.items()}
    for tmp in temps.values():
        tmp.parent.mkdir(parents=True, exist_ok=True)
    filesystem().get([strip(u) for u in copies], [str(temps[u]) for u in copies])
    for uri, path in copies.items():
        if mtimes_ns:
            os.utime(temps[uri], ns=(mtimes_ns[uri], mtimes_ns[uri]))
        os.replace(temps[uri], path)


def local_files(uris: list[str]) -> list[str]:
    """Paths DuckDB can read for the lake's data files `uris`: local files as they are;
    objects as copies in `MEDLAKE_HOME/lake_cache/<bucket>/<key>` (the key keeps its
    `column=value/` partition folders), fetched on first use (`fetch`). A copy still in
    use has its time refreshed daily, so `prune_cache` keeps it."""
    if not uris or not is_remote(uris[0]):
        return uris
    root = get_settings().lake_cache
    out, todo, now = [], {}, time.time()
    for uri in uris:
        path = root / strip(uri)
        try:
            if now - path.stat().st_mtime > DAY:
                os.utime(path)
        except FileNotFoundError:
            todo[uri] = path
        out.append(str(path))
    if todo:
        fetch(todo)
    return out


def prune_cache(days: float, under: str = "") -> int:
    """Remove cached copies (and leftover partial ones) not used for `days`, below the
    cache folder `under` (e.g. a layer's `bucket/prefix/bronze`); returns how many."""
    root = get_settings().lake_cache / under
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - days * DAY, 0
    for path in root.rglob("*"):
        if path.is_file() and path.stat().st_mtime < cutoff:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


def read_text(uri: str) -> str | None:
    """The text of a small file at a path or s3:// URI; None when there is none."""
    if not is_remote(uri):
        path = Path(uri)
        return path.read_text() if path.is_file() else None
    try:
        return filesystem().cat_file(strip(uri)).decode()
    except FileNotFoundError:
        return None


def write_text(uri: str, text: str) -> None:
    """Write a small file at a path or s3:// URI (an object put is atomic)."""
    if not is_remote(uri):
        Path(uri).write_text(text)
        return
    filesystem().pipe_file(strip(uri), text.encode())
