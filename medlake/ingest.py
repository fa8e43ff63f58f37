"""The landing-zone → bronze engine shared by every modality.

A modality supplies a parser (file → rows for one or more tables, plus problems); this
module finds new files, hashes them, writes the rows with idempotent MERGEs, sends bad
input to `bronze.quarantine`, and only then records each file in `bronze.ingest_log`.
Because the log is written last, a run killed half-way re-processes the unfinished
files next time, and the MERGEs make that re-processing harmless.

Parsing is spread over a pool of processes (one per core) with a time bound per file,
so one pathological file is quarantined instead of hanging the run. A file already
logged with the same path, size and modification time is skipped without being read
again; any other file is hashed, and skipped if its bytes were ingested before.
"""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable, Iterable

import pyarrow as pa

from medlake import lake

QUARANTINE = "bronze.quarantine"
INGEST_LOG = "bronze.ingest_log"

QUARANTINE_SCHEMA = pa.schema([
    ("source_uri", pa.string()), ("source_sha256", pa.string()), ("modality", pa.string()),
    ("error", pa.string()), ("detected_at", pa.timestamp("us", tz="UTC")),
    ("batch_id", pa.string()),
])
LOG_SCHEMA = pa.schema([
    ("source_uri", pa.string()), ("source_sha256", pa.string()), ("modality", pa.string()),
    ("status", pa.string()), ("rows", pa.int64()), ("problems", pa.int64()),
    ("size_bytes", pa.int64()), ("batch_id", pa.string()),
    ("ingested_at", pa.timestamp("us", tz="UTC")), ("mtime_ns", pa.int64()),
])
# Below this many new files, starting worker processes costs more than it saves.
POOL_MIN_FILES = 500
BATCH_FILES = 32
PARSE_TIMEOUT_S = 60.0


@dataclass
class Problem:
    """Bad input found while parsing. `where` narrows the place inside the file
    (`#entry=3`, `#line=12`); `error` is one sentence a data engineer can act on."""
    error: str
    where: str = ""


@dataclass
class Parsed:
    rows: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # the whole file is unusable
    status: str | None = None  # the file's status in the log, when not data (a directory)


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    keys: list[str]
    update_when: str | None = None  # when a newer row replaces the stored one
    description: str = ""


@dataclass
class Modality:
    name: str
    patterns: list[str]
    tables: list[TableSpec]
    parse: Callable[[Path], Parsed]
    # Files per MERGE: fewer, larger commits are faster; each chunk's rows sit in memory.
    chunk_files: int = 200


@dataclass
class IngestSummary:
    modality: str
    files_seen: int = 0
    files_skipped: int = 0
    files_ingested: int = 0
    files_quarantined: int = 0
    problems: int = 0
    rows: dict[str, int] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def now() -> datetime:
    return datetime.now(timezone.utc)


def find_files(root: Path, patterns: Iterable[str]) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in root.glob(pattern) if p.is_file())
    return sorted(found)


def ingested(modality: str) -> tuple[set[str], set[tuple]]:
    """What the log already holds for a modality: the content hashes, and the
    (uri, size, mtime) stamps that let an unchanged file be skipped unread."""
    # SELECT *: files written before a column was added do not carry it.
    got = lake.read(INGEST_LOG, "SELECT * FROM t WHERE modality = ?", [modality]).to_pylist()
    return ({r["source_sha256"] for r in got},
            {(r["source_uri"], r["size_bytes"], r.get("mtime_ns")) for r in got})


def _stamp(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return path.as_uri(), st.st_size, st.st_mtime_ns


def _ensure(table: str, schema: pa.Schema) -> None:
    """Create the table, or add the columns a newer parser or log version brings
    (NULL in older rows; e.g. a log without mtimes hashes those files once more)."""
    dt = lake.ensure(table, schema)
    missing = [f for f in schema if f.name not in lake.arrow_schema(dt).names]
    if missing:
        from deltalake import Field
        dt.alter.add_columns([Field.from_arrow(f) for f in missing])


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _dedupe(rows: list[dict], keys: list[str], order: str | None) -> list[dict]:
    """One row per key within a batch (MERGE needs unique source keys): the latest by
    `order` when given, else the last seen."""
    best: dict[tuple, dict] = {}
    for row in rows:
        k = tuple(row[c] for c in keys)
        old = best.get(k)
        if old is None or not order or (row.get(order) or _EPOCH) >= (old.get(order) or _EPOCH):
            best[k] = row
    return list(best.values())


def ingest(modality: Modality, root: Path, batch_id: str, *, chunk_files: int | None = None,
           progress: Callable[[int, int], None] | None = None, workers: int | None = None,
           timeout_s: float = PARSE_TIMEOUT_S) -> IngestSummary:
    """Ingest every new file under `root` that matches the modality's patterns, parsing
    on `workers` processes (default: every core), each file within `timeout_s`."""
    summary = IngestSummary(modality.name)
    for spec in modality.tables:
        _ensure(spec.name, spec.schema)
    lake.ensure(QUARANTINE, QUARANTINE_SCHEMA)
    _ensure(INGEST_LOG, LOG_SCHEMA)

    # Resolved once here, so each file's URI needs no filesystem walk of its own.
    files = find_files(root.resolve(), modality.patterns) if root.exists() else []
    summary.files_seen = len(files)
    done, stamps = ingested(modality.name)
    todo = []
    with _Parser(modality.parse, workers or os.cpu_count() or 1, timeout_s) as parser:
        for path in files:
            stamp = _stamp(path)
            if stamp in stamps:
                summary.files_skipped += 1
                continue
            digest = sha256_file(path)
            if digest in done:
                summary.files_skipped += 1
                continue
            todo.append((path, digest, stamp))
            done.add(digest)  # the same bytes under two names are ingested once
            if len(todo) == POOL_MIN_FILES:
                parser.start()  # workers start up while the rest is hashed

        results = parser.map([path for path, _, _ in todo])
        chunk_files = chunk_files or modality.chunk_files
        for start in range(0, len(todo), chunk_files):
            chunk = todo[start:start + chunk_files]
            parsed = [next(results) for _ in chunk]
            _ingest_chunk(modality, chunk, parsed, batch_id, summary)
            if progress:
                progress(start + len(chunk), len(todo))
    return summary


def _timed_out(signum, frame):
    raise TimeoutError


def parse_bounded(parse: Callable[[Path], Parsed], path: Path, timeout_s: float) -> Parsed:
    """`parse(path)`, with any exception or overrun turned into a fatal Problem. The
    time bound is an interval timer, which only the main thread of a process can set
    (true in pool workers and in a plain CLI run)."""
    bounded = threading.current_thread() is threading.main_thread()
    if bounded:
        old = signal.signal(signal.SIGALRM, _timed_out)
        signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return parse(path)
    except TimeoutError:
        return _overran(timeout_s)
    except Exception as e:  # a parser bug must not take the batch down with it
        return Parsed(problems=[Problem(f"Could not be read ({type(e).__name__}: {e}).")],
                      fatal=True)
    finally:
        if bounded:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


def parse_batch(parse: Callable[[Path], Parsed], paths: list[Path],
                timeout_s: float) -> list[Parsed]:
    return [parse_bounded(parse, p, timeout_s) for p in paths]


def _overran(timeout_s: float) -> Parsed:
    return Parsed(problems=[Problem(
        f"Parsing took longer than {timeout_s:g} seconds, so the file was set aside; "
        "check whether it is truncated or malformed.")], fatal=True)


def _load(parse) -> None:
    """Pool initializer: receiving `parse` imports its module before work arrives."""


class _Parser:
    """Parses files in order, in this process or, once `start`ed, on a pool of spawned
    processes (a fork would copy the Delta and Dagster threads' locks). Work runs a
    bounded window ahead of the caller, so parsing overlaps the caller's Delta writes.
    If a worker stops answering (stuck where the timer cannot reach), the pool is
    replaced and the file that hangs quarantined."""

    def __init__(self, parse, workers: int, timeout_s: float):
        self.parse, self.workers, self.timeout_s = parse, workers, timeout_s
        self.pool = None
        self.pooled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()

    def start(self) -> None:
        if self.workers > 1:
            self.pool = multiprocessing.get_context("spawn").Pool(
                self.workers, initializer=_load, initargs=(self.parse,))
            self.pooled = True

    def map(self, paths: list[Path]):
        if not self.pooled:
            for path in paths:
                yield parse_bounded(self.parse, path, self.timeout_s)
            return
        # Files travel in batches: one message per file costs more than a header parse.
        queue = deque(paths[i:i + BATCH_FILES] for i in range(0, len(paths), BATCH_FILES))
        pending: deque = deque()
        while queue or pending:
            while queue and len(pending) < 4 * self.workers:
                batch = queue.popleft()
                if self.pool is None:
                    self.start()
                pending.append((batch, self.pool.apply_async(
                    parse_batch, (self.parse, batch, self.timeout_s))))
            batch, job = pending.popleft()
            try:
                yield from job.get(timeout=self.timeout_s * len(batch) + 10)
            except multiprocessing.TimeoutError:
                # A worker stuck where its timer cannot reach: replace the pool, retry
                # the batch file by file, and set aside the file that hangs alone.
                self.pool.terminate()
                self.pool = None
                rest = [b for b, _ in pending]
                pending.clear()
                if len(batch) == 1:
                    yield _overran(self.timeout_s)
                    queue.extendleft(reversed(rest))
                else:
                    queue.extendleft(reversed([[p] for p in batch] + rest))


def _ingest_chunk(modality: Modality, chunk: list[tuple[Path, str, tuple]],
                  results: list[Parsed], batch_id: str, summary: IngestSummary) -> None:
    at = now()
    rows: dict[str, list[dict]] = {spec.name: [] for spec in modality.tables}
    quarantine, ledger = [], []
    for (path, digest, (uri, size, mtime)), parsed in zip(chunk, results):
        n = 0
        if not parsed.fatal:
            for table, table_rows in parsed.rows.items():
                for r in table_rows:
                    r.update(source_uri=uri, source_sha256=digest, batch_id=batch_id,
                             ingested_at=at)
                rows[table].extend(table_rows)
                n += len(table_rows)
        for p in parsed.problems:
            quarantine.append(dict(source_uri=uri + p.where, source_sha256=digest,
                                   modality=modality.name, error=p.error, detected_at=at,
                                   batch_id=batch_id))
        summary.problems += len(parsed.problems)
        status = "quarantined" if parsed.fatal else (
            parsed.status or ("partial" if parsed.problems else "ingested"))
        if parsed.fatal:
            summary.files_quarantined += 1
        else:
            summary.files_ingested += 1
        ledger.append(dict(source_uri=uri, source_sha256=digest, modality=modality.name,
                           status=status, rows=n, problems=len(parsed.problems),
                           size_bytes=size, batch_id=batch_id, ingested_at=at, mtime_ns=mtime))

    for spec in modality.tables:
        order = "last_updated" if "last_updated" in spec.schema.names else None
        table_rows = _dedupe(rows[spec.name], spec.keys, order)
        result = lake.merge(spec.name, pa.Table.from_pylist(table_rows, spec.schema),
                            spec.keys, spec.update_when)
        summary.rows[spec.name] = summary.rows.get(spec.name, 0) + result.inserted + result.updated
    if quarantine:
        lake.merge(QUARANTINE, pa.Table.from_pylist(
            _dedupe(quarantine, ["source_uri", "source_sha256"], None), QUARANTINE_SCHEMA),
            ["source_uri", "source_sha256"])
    # Last: only now are these files done. See the module docstring.
    lake.merge(INGEST_LOG, pa.Table.from_pylist(ledger, LOG_SCHEMA),
               ["source_uri", "source_sha256"])
