"""The landing-zone → bronze engine shared by every modality.

A modality supplies a parser (file → rows for one or more tables, plus problems); this
module finds new files, hashes them, writes the rows with idempotent MERGEs, sends bad
input to `bronze.quarantine`, and only then records each file in `bronze.ingest_log`.
Because the log is written last, a run killed half-way re-processes the unfinished
files next time, and the MERGEs make that re-processing harmless.

A parser may also yield a file's rows in pieces (a generator of `Parsed`), so a file
larger than memory streams through: rows are merged whenever `FLUSH_ROWS` (or the
modality's own `flush_rows`) are buffered, or its `flush_idle_rows` while the writer has
nothing to do.
If a piece turns out fatal after earlier pieces were merged, the rows that file wrote
(its `source_sha256`) are deleted again before the file is quarantined: a bad file
never stays half-landed. Earlier files' buffered rows are merged before such a file's
own, so on a key both carry the stored row is the earlier file's and that delete never
takes another file's row with it. A run killed before the delete leaves the file
unlogged, so the next run parses it again, meets the same error and deletes them then,
the killed run's rows included. Files logged in between may have relied on those rows
(their MERGEs found the shared keys stored): they are un-logged and ingested again
before the run ends (`_unlog_since`, `_reland`).
Other writers' files are not in that order, so among them (MEDLAKE_BRONZE_WRITERS > 1)
a file that outgrows one flush is first read through for a fatal problem and only
then parsed again to land: a bad one never commits a row (`_read_file`).

Parsing is spread over a pool of processes (one per core) with a time bound per file,
so one pathological file is quarantined instead of hanging the run; a modality whose
files stream (`Modality.streams`) is parsed in this process instead, piece by piece. A
file already logged with the same path, size and modification time is skipped without
being read again; any other file is hashed where it is parsed (on the pool: in the
worker), and skipped if its bytes were ingested before.

The Delta writes run on one background thread (`_Writer`), in the order they were
handed over and one at a time, while this thread parses on: a chunk's rows, quarantine
entries and log are one job, in that order, and a failed job stops the run before any
later one, so the log is still written last. Within a job, different tables are
written side by side, each table's rows in their order.

A MERGE is only needed where a key is already stored: a flush whose keys the table does
not hold yet is appended instead (much cheaper for a large new file), which is safe
while bronze has one writer at a time (MEDLAKE_BRONZE_WRITERS=1, the default, which
its Dagster pool enforces). A run killed mid-file leaves rows of an unlogged file; the
next run parses it again and, those keys being stored, MERGEs them instead of appending
duplicates.

With MEDLAKE_BRONZE_WRITERS above 1, several ingests (other batches, other modalities)
write the same tables at once, and batches can share keys (a variant site in two VCFs,
a Patient in two bundles, the same file in two batches). Then nothing is appended:
every write is a MERGE, which delta-rs rejects when another writer committed rows its
keys could match since its snapshot, and `lake.merge` retries it from a fresh one
(backoff with jitter), where it finds those rows: each key is stored once, and the log
and quarantine (MERGEd on their keys too) hold a file once however many runs saw it.
Two runs that see the same new file both parse it; the second's MERGEs change nothing.
The open table handles are brought up to date before each write, so a MERGE starts
from the newest snapshot and conflicts only with what is committed while it runs.

A parser may vouch that a piece's keys for a table are distinct, from each other and
from the file's earlier pieces (`Parsed.distinct`). A flush holding only such rows of one
file then skips the duplicate-key check, and its probe for stored keys reads only the
files the table had before that file's first rows: while a file's rows have only been
appended, those are all the rows that can share its keys.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import multiprocessing.pool
import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties

from medlake import lake
from medlake.config import Settings, get_settings

QUARANTINE = "bronze.quarantine"
INGEST_LOG = "bronze.ingest_log"
FLUSH_ROWS = 200_000  # rows buffered before a MERGE: bounds memory for streamed files

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
# Below this many new files, starting worker processes costs more than it saves: a
# spawned worker imports pyarrow, pydicom and the lake (1-3 s on a busy 2-core box), and
# a DICOM header now parses in well under a millisecond (bench/dicom.py: one process
# beat the pool of 2 at 5,000 files, the pool won at 20,000).
POOL_MIN_FILES = 10_000
BATCH_FILES = 32
PARSE_TIMEOUT_S = 60.0


@dataclass
class Problem:
    """Bad input found while parsing. `where` narrows the place inside the file
    (`#entry=3`, `#line=12`); `error` is one sentence a data engineer can act on."""
    error: str
    where: str = ""


class Batch:
    """Rows a parser keeps in a form of its own (columns as Python lists, say) until the
    flush makes many files' worth Arrow in one go: made file by file, those Arrow calls
    cost more than parsing a small file."""

    def __len__(self) -> int:
        raise NotImplementedError

    @classmethod
    def arrow(cls, batches: list["Batch"]) -> pa.Table:
        """Several batches of this kind, in order, as one table."""
        raise NotImplementedError


class Rows(Batch):
    """Rows as tuples in the order of `schema`'s columns (provenance aside): the cheapest
    form for a parser to build, made Arrow column by column at the flush."""

    def __init__(self, schema: pa.Schema, rows: list[tuple] | None = None):
        self.schema, self.rows = schema, rows if rows is not None else []

    def __len__(self) -> int:
        return len(self.rows)

    @classmethod
    def arrow(cls, batches: list["Rows"]) -> pa.Table:
        schema = batches[0].schema
        rows = [row for b in batches for row in b.rows]
        if not rows:
            return schema.empty_table()
        return pa.Table.from_arrays([pa.array(column, f.type) for column, f in zip(zip(*rows), schema)],
                                    schema=schema)


@dataclass
class Parsed:
    # table -> rows, as dicts, an Arrow table or a parser's Batch (provenance columns are
    # added here)
    rows: dict[str, list[dict] | pa.Table | Batch] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # the whole file is unusable
    status: str | None = None  # the file's status in the log, when not data (a directory)
    # Tables whose keys in this piece the parser vouches are distinct, from each other and
    # from every earlier piece of the same file (module docstring).
    distinct: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    keys: list[str]
    update_when: str | None = None  # when a newer row replaces the stored one
    description: str = ""
    partition_by: list[str] | None = None
    # Parquet encoding; delta-rs's default if None. A `lake.ArrowWriter` has appends
    # written by pyarrow, its provenance columns handed over dictionary-encoded.
    writer_properties: WriterProperties | lake.ArrowWriter | None = None


@dataclass
class Modality:
    name: str
    patterns: list[str]
    tables: list[TableSpec]
    parse: Callable[[Path], Parsed | Iterator[Parsed]]  # one Parsed, or a file in pieces
    # Files per MERGE: fewer, larger commits are faster; each chunk's rows sit in memory.
    chunk_files: int = 200
    # Parses yield pieces of large files: parsed in this process (a generator cannot
    # cross to a worker), so memory stays bounded by FLUSH_ROWS.
    streams: bool = False
    flush_rows: int | None = None  # FLUSH_ROWS for this modality (small rows: flush fewer times)
    # Also flush once this many rows are buffered if the writer has nothing to do: a
    # large streamed file then keeps the second core busy from its first pieces, not
    # from its first `flush_rows`, and the flush after its last piece is smaller. None:
    # only at `flush_rows` (for a modality whose flushes cost more than the overlap wins).
    flush_idle_rows: int | None = None
    # Optional: parse from the file's first HEAD_BYTES (all of it when `complete`), which
    # a pool worker has already read to hash the file, so the file is read only once.
    parse_head: Callable[[Path, bytes, bool], Parsed] | None = None


@dataclass
class IngestSummary:
    modality: str
    files_seen: int = 0
    files_skipped: int = 0
    files_ingested: int = 0
    files_quarantined: int = 0
    problems: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    # Commit conflicts with concurrent writers that were retried (lake.commit_retries)
    commit_retries: int = 0
    # Files landed again: they may have relied on rows a killed run left of a file that
    # turned out bad (_Buffer._delete), so they were un-logged and ingested once more
    files_relanded: int = 0
    unlogged: list[str] = field(default_factory=list)  # their URIs


log = logging.getLogger(__name__)

HEAD_BYTES = 1 << 20


def hash_head(path: Path) -> tuple[str, bytes, bool]:
    """The file's sha256, its first HEAD_BYTES, and whether those are the whole file:
    one pass over the bytes for both the hash and a parser that reads from them."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        h.update(head)
        complete = len(head) < HEAD_BYTES
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            complete = False
    return h.hexdigest(), head, complete


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


def _stamp(path: Path, settings: Settings) -> tuple[str, int, int]:
    st = path.stat()
    return settings.source_uri(path), st.st_size, st.st_mtime_ns


def _ensure(table: str, schema: pa.Schema, partition_by: list[str] | None = None) -> None:
    """Create the table, or add the columns a newer parser or log version brings
    (NULL in older rows; e.g. a log without mtimes hashes those files once more)."""
    from deltalake import Field

    dt = lake.ensure(table, schema, partition_by)
    for _ in range(3):
        missing = [f for f in schema if f.name not in lake.arrow_schema(dt).names]
        if not missing:
            return
        try:
            dt.alter.add_columns([Field.from_arrow(f) for f in missing])
            return
        except Exception:
            # A concurrent ingest added them first (or committed meanwhile): look again.
            dt = lake.open_table(table)
    raise RuntimeError(f"Could not add columns {[f.name for f in missing]} to {table}.")


def _ensure_tables(modality: Modality) -> None:
    for spec in modality.tables:
        _ensure(spec.name, spec.schema, spec.partition_by)
    lake.ensure(QUARANTINE, QUARANTINE_SCHEMA)
    _ensure(INGEST_LOG, LOG_SCHEMA)


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows → Arrow, column by column: several times faster than `Table.from_pylist`,
    which dominated FHIR ingestion (timestamps above all)."""
    return pa.Table.from_arrays([pa.array([r.get(f.name) for r in rows], f.type) for f in schema],
                                schema=schema)


def _dedupe(rows: pa.Table, keys: list[str], order: str | None) -> pa.Table:
    """One row per key within a batch (MERGE needs unique source keys): the latest by
    `order` when given, else the last seen."""
    if rows.num_rows < 2 or _unique(rows, keys):
        return rows
    if order:  # a stable sort, nulls (unknown) first: ties keep their arrival order
        rows = rows.take(pc.sort_indices(rows, [(order, "ascending", "at_start")]))
    last = (rows.select(keys).append_column("_i", pa.array(range(rows.num_rows), pa.int64()))
            .group_by(keys, use_threads=False).aggregate([("_i", "max")]))
    keep = last.column("_i_max")
    return rows.take(pc.take(keep, pc.sort_indices(keep)))  # in arrival order


def ingest(modality: Modality, root: Path, batch_id: str, *, chunk_files: int | None = None,
           progress: Callable[[int, int], None] | None = None, workers: int | None = None,
           timeout_s: float = PARSE_TIMEOUT_S,
           files: Iterable[Path] | None = None, sole_writer: bool | None = None) -> IngestSummary:
    """Ingest every new file under `root` that matches the modality's patterns, or only
    `files` when given (a sensor's batch; a listed file that has vanished is skipped),
    parsing on `workers` processes (default: every core), each file within `timeout_s`.
    `sole_writer`: whether no other ingest writes bronze meanwhile, so new keys may be
    appended (default: MEDLAKE_BRONZE_WRITERS is 1; the module docstring says more)."""
    summary = IngestSummary(modality.name)
    retried = sum(lake.commit_retries().values())
    # Resolved once here, so each file's URI needs no filesystem walk of its own.
    if files is not None:
        files = sorted({Path(f).resolve() for f in files if Path(f).is_file()})
    else:
        files = find_files(root.resolve(), modality.patterns) if root.exists() else []
    summary.files_seen = len(files)
    done, stamps = ingested(modality.name)
    workers = 1 if modality.streams else (workers or os.cpu_count() or 1)
    with _Parser(modality.parse, workers, timeout_s, modality.parse_head) as parser, \
            _Writer(get_settings().sole_bronze_writer if sole_writer is None else sole_writer) as writer:
        # Each logged stamp spares at most one file: with this many more files than
        # stamps, the pool is needed, and its workers start up while the files are
        # stat'ed and the tables opened.
        if len(files) - len(stamps) >= POOL_MIN_FILES:
            parser.start()
        # The writer's first job, done meanwhile (creating the tables of a new lake is
        # three commits).
        writer.submit(lambda: _ensure_tables(modality))
        todo = []
        settings = get_settings()  # once: files staged from object storage keep its URIs
        for path in files:
            stamp = _stamp(path, settings)
            if stamp in stamps:
                summary.files_skipped += 1
            else:
                todo.append((path, stamp))
        if len(todo) >= POOL_MIN_FILES and not parser.pooled:
            parser.start()

        chunk_files = chunk_files or modality.chunk_files
        chunk, parsed = [], []
        results = parser.map([path for path, _ in todo])
        for seen, ((path, stamp), (digest, pieces)) in enumerate(zip(todo, results), 1):
            # Hashed where it is parsed (on the pool, the file is read there only).
            if digest in done:
                summary.files_skipped += 1
            else:
                done.add(digest)  # the same bytes under two names are ingested once
                chunk.append((path, digest, stamp))
                parsed.append(pieces)
            if len(chunk) == chunk_files or (seen == len(todo) and chunk):
                _ingest_chunk(modality, chunk, parsed, batch_id, summary, writer)
                chunk, parsed = [], []
            if progress and (seen % chunk_files == 0 or seen == len(todo)):
                progress(seen, len(todo))
    summary.commit_retries = sum(lake.commit_retries().values()) - retried
    if summary.unlogged:
        _reland(modality, root, batch_id, summary, chunk_files=chunk_files, workers=workers,
                timeout_s=timeout_s, sole_writer=sole_writer)
    return summary


def _reland(modality: Modality, root: Path, batch_id: str, summary: IngestSummary,
            **options) -> None:
    """Ingest the files `summary.unlogged` names once more (see `_unlog_since`)."""
    from medlake import landing

    paths = landing.local_paths(modality, summary.unlogged)
    again = ingest(modality, root, batch_id, files=paths, **options)
    summary.files_relanded = again.files_ingested
    summary.commit_retries += again.commit_retries
    for table, n in again.rows.items():
        summary.rows[table] = summary.rows.get(table, 0) + n
    if len(paths) < len(summary.unlogged):
        log.warning("%s: %d of the files to land again are no longer in the landing zone; "
                    "their rows that shared keys with the bad file are gone until they land "
                    "again", modality.name, len(summary.unlogged) - len(paths))


def _unique(rows: pa.Table, keys: list[str]) -> bool:
    """Whether the keys are already unique (the usual case; cheaper than deduping)."""
    if len(keys) == 1:
        return pc.count_distinct(rows.column(keys[0]), mode="all").as_py() == rows.num_rows
    # Each key column as dictionary indexes, combined into one integer per row: counting
    # distinct integers is far cheaper than grouping or joining strings.
    code, span = np.zeros(rows.num_rows, np.int64), 1
    for k in keys:
        encoded = pc.dictionary_encode(rows.column(k).combine_chunks(), null_encoding="encode")
        width = len(encoded.dictionary)
        if span * width >= 2 ** 62:  # would overflow: group the columns instead
            return rows.select(keys).group_by(keys, use_threads=False).aggregate([]).num_rows == rows.num_rows
        code = code * width + encoded.indices.to_numpy(zero_copy_only=False)
        span *= width
    # Sorted, no two neighbours equal (np.unique's hashing is ~50x slower on 500k keys).
    return not (np.diff(np.sort(code)) == 0).any()


def _pieces(parse: Callable, path: Path, timeout_s: float) -> Iterator[Parsed]:
    """The parser's output as pieces; a parser error, even mid-file, becomes a fatal one.
    The time bound covers a whole-file parse; a streamed file is bounded by its pieces."""
    out = parse_bounded(parse, path, timeout_s)
    if isinstance(out, Parsed):
        yield out
        return
    try:
        yield from out
    except Exception as e:  # a parser bug must not take the batch down with it
        yield Parsed(problems=[Problem(f"Could not be read ({type(e).__name__}: {e}).")],
                     fatal=True)


class Reparsable:
    """A file's pieces (`_pieces`), parsed afresh each time they are iterated."""

    def __init__(self, parse: Callable, path: Path, timeout_s: float):
        self.parse, self.path, self.timeout_s = parse, path, timeout_s

    def __iter__(self) -> Iterator[Parsed]:
        return _pieces(self.parse, self.path, self.timeout_s)


class _Writer:
    """Runs the Delta writes on one background thread, one at a time and in the order
    they were handed over, while the caller parses the next files: delta-rs encodes and
    commits Parquet without holding the GIL, so on two cores the write of one chunk
    overlaps the parse of the next. A job waits for the one before it, so at most one
    write is in flight (memory: its rows, plus the buffer being filled), and a job
    that fails stops the run at the next hand-over, before any later job runs: a
    chunk's ingest log is written in the same job as, and after, its rows.

    `sole`: no other ingest writes bronze meanwhile (MEDLAKE_BRONZE_WRITERS=1), so new
    keys may be appended; otherwise every write is a MERGE (module docstring)."""

    def __init__(self, sole: bool = True):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="bronze-writer")
        self.pending: Future | None = None
        self.sole = sole
        # Open tables, kept current by the writes (on the writer thread only): reopening
        # one per flush replays its log each time.
        self.handles: dict[str, DeltaTable] = {}

    def table(self, name: str) -> DeltaTable:
        if name not in self.handles:
            self.handles[name] = lake.open_table(name)
        elif not self.sole and self.handles[name] is not None:
            # Other writers commit too: read only the commits since (cheaper than reopening),
            # so the MERGE conflicts only with what is committed while it runs.
            self.handles[name].update_incremental()
        return self.handles[name]

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        try:
            if exc_type is None:
                self.wait()
            elif self.pending is not None:
                self.pending.exception()  # let it finish; the caller's error wins
        finally:
            self.pool.shutdown()

    def submit(self, job: Callable[[], None]) -> None:
        self.wait()
        self.pending = self.pool.submit(job)

    def idle(self) -> bool:
        """Whether no write is in flight."""
        return self.pending is None or self.pending.done()

    def wait(self) -> None:
        """Block until the write in flight is done; raise its error here."""
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.result()


class _Buffer:
    """Rows waiting for a MERGE, per table, tagged with the file they came from."""

    def __init__(self, modality: Modality, summary: IngestSummary, writer: _Writer, at: datetime):
        self.specs = {spec.name: spec for spec in modality.tables}
        self.summary = summary
        self.writer = writer
        self.at = at  # this chunk's ingested_at: older rows were written by earlier runs
        # The oldest row a killed run left of a file that turned out bad (see _delete).
        self.leftovers_since: datetime | None = None
        # table -> [(file digest, rows, keys vouched distinct)]
        self.tables: dict[str, list[tuple[str, list[dict] | _Stamped, bool]]] = {
            name: [] for name in self.specs}
        self.size = 0
        self.flushed: set[str] = set()  # files with rows already handed to the writer
        # (table, file) -> the table's files before that file's first rows, while all of
        # them were appended (None once some were MERGEd or written with another file's).
        # Only the writer thread touches it.
        self.before: dict[tuple[str, str], list[str] | None] = {}

    def add(self, table: str, rows: list[dict] | pa.Table | Batch, digest: str, provenance: dict,
            distinct: bool = False) -> int:
        if isinstance(rows, list):
            # Dict rows wait as dicts and become Arrow in one go at the flush: converting
            # one file's row at a time cost more than parsing it.
            for row in rows:
                row.update(provenance)
            self.tables[table].append((digest, rows, distinct))
            self.size += len(rows)
            return len(rows)
        self.tables[table].append((digest, _Stamped(rows, provenance), distinct))
        self.size += len(rows)
        return len(rows)

    def discard(self, digest: str, streamed: bool = False) -> None:
        """Forget a bad file's rows: drop the buffered ones, delete the merged ones (after
        the writes in flight, which may be the ones that stored them). A streamed file
        may also have rows a killed run left; they are looked for and deleted too."""
        for name, pending in self.tables.items():
            self.tables[name] = [p for p in pending if p[0] != digest]
        self.size = sum(len(p[1]) for pending in self.tables.values() for p in pending)
        if digest in self.flushed or streamed:
            self.writer.submit(lambda: self._delete(digest))

    def _delete(self, digest: str) -> None:
        """Delete a bad file's rows. Rows from before this chunk were left by a killed
        run, and files logged since may have MERGEd keys they share, found them stored
        and inserted nothing: `_finish_chunk` un-logs those files and `ingest` lands them
        again (their MERGEs then insert what this delete took)."""
        self.writer.handles.clear()  # the deletes below commit through handles of their own
        for name in self.specs:  # every bronze row carries its provenance (ingested_at)
            mine, earliest = lake.read(
                name, "SELECT count(*) FILTER (WHERE ingested_at >= ?), min(ingested_at) "
                      "FILTER (WHERE ingested_at < ?) FROM t WHERE source_sha256 = ?",
                [self.at, self.at, digest]).to_pylist()[0].values()
            if earliest is not None and (self.leftovers_since is None or earliest < self.leftovers_since):
                self.leftovers_since = earliest
            lake.delete(name, f"source_sha256 = '{digest}'")
            self.summary.rows[name] = self.summary.rows.get(name, 0) - mine

    def take(self, but: str | None = None) -> list[tuple[TableSpec, list]]:
        """The buffered rows, per table, except those of file `but` when given; they are
        the caller's to `write` now."""
        batches = []
        for name, pending in self.tables.items():
            now_, later = [p for p in pending if p[0] != but], [p for p in pending if p[0] == but]
            self.tables[name] = later
            if now_:
                batches.append((self.specs[name], now_))
                self.flushed.update(p[0] for p in now_)
        self.size = sum(len(p[1]) for pending in self.tables.values() for p in pending)
        return batches

    def flush(self, last: str | None = None) -> None:
        """MERGE the buffered rows on the writer, those of file `last` after all others'
        (module docstring), in one job so that parsing goes on meanwhile."""
        batches = self.take(but=last) + self.take()
        if batches:
            self.writer.submit(lambda: self.write(batches))

    def write(self, batches: list[tuple[TableSpec, list]]) -> None:
        """MERGE rows `take`n from the buffer (on the writer thread). Tables are written
        two at a time, each table's batches in their order (see the module docstring): a
        file's last flush (its last calls with its sites and annotations, say) is
        written after its parse has ended, when nothing else needs the second core."""
        tables: dict[str, list[tuple[TableSpec, list]]] = {}
        for spec, parts in batches:
            tables.setdefault(spec.name, []).append((spec, parts))

        def write_table(batches: list[tuple[TableSpec, list]]) -> None:
            for spec, parts in batches:
                self._write_table(spec, parts)

        if len(tables) == 1:
            write_table(batches)
            return
        with ThreadPoolExecutor(2, thread_name_prefix="bronze-table") as pool:
            for done in [pool.submit(write_table, t) for t in tables.values()]:
                done.result()

    def _write_table(self, spec: TableSpec, parts: list) -> None:
        """One table's MERGE; it alone touches that table's handle, `before` entries
        and row count."""
        rows = _concat(spec.schema, [p[1] for p in parts],
                       isinstance(spec.writer_properties, lake.ArrowWriter))
        digests = {p[0] for p in parts}
        stored = self._stored(spec.name, digests, all(p[2] for p in parts))
        if stored is None:  # keys not vouched for: one row per key, as MERGE needs
            order = "last_updated" if "last_updated" in spec.schema.names else None
            rows = _dedupe(lake.decoded(rows), spec.keys, order)
        # Appended when none of the keys is stored yet (a new file's rows, the usual
        # case), MERGEd otherwise, e.g. over the rows a killed run left; always MERGEd
        # when other ingests write too (module docstring).
        result = lake.merge(spec.name, rows, spec.keys, spec.update_when, sole_writer=self.writer.sole,
                            stored_files=stored, writer_properties=spec.writer_properties,
                            handle=self.writer.table(spec.name))
        if not result.appended:
            for d in digests:
                self.before[(spec.name, d)] = None
        self.summary.rows[spec.name] = (self.summary.rows.get(spec.name, 0)
                                        + result.inserted + result.updated)

    def _stored(self, table: str, digests: set[str], vouched: bool) -> list[str] | None:
        """The table's files that can hold the keys of rows from files `digests` when the
        parser vouched for them all (`vouched`) and they come from one file: those from
        before the file's first rows, while the file has only been appended. None: all
        files, and the keys need checking."""
        if not self.writer.sole:
            # Every write is a MERGE, which probes nothing first: only whether the keys
            # need deduping matters (not when one file vouched for them).
            return [] if vouched and len(digests) == 1 else None
        if len(digests) != 1:
            for d in digests:
                self.before[(table, d)] = None
            return None
        (digest,) = digests
        if (table, digest) not in self.before:  # the file's first rows in this table
            dt = self.writer.table(table)
            self.before[(table, digest)] = dt.file_uris() if dt is not None else []
        return self.before[(table, digest)] if vouched else None


@dataclass
class _Stamped:
    """A file's Arrow rows (or Batch), and the provenance its rows get at the flush, for
    all files at once: made file by file, those Arrow calls cost more than parsing a
    small file."""
    rows: pa.Table | Batch
    provenance: dict

    def __len__(self) -> int:
        return len(self.rows)


def _concat(schema: pa.Schema, parts: list[list[dict] | _Stamped],
            dictionaries: bool = False) -> pa.Table:
    """Buffered parts as one table, in arrival order; runs of dict rows convert at once,
    runs of Arrow rows are stamped at once (see `_with_provenance` for `dictionaries`)."""
    tables = []
    for stamped, run in groupby(parts, key=lambda part: isinstance(part, _Stamped)):
        run = list(run)
        tables.append(_with_provenance(schema, run, dictionaries) if stamped else
                      to_table([row for part in run for row in part], schema))
    if len(tables) > 1:
        tables = [lake.decoded(t) for t in tables]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def _with_provenance(schema: pa.Schema, parts: list[_Stamped], dictionaries: bool = False) -> pa.Table:
    """Files' Arrow rows as one table in `schema`, each row with its own file's provenance
    columns (replacing any the parser filled). `dictionaries`: the string ones as
    dictionary arrays of one value per file, for a writer that takes them as they are
    (`lake.merge` decodes them for the others): spelt out they are tens of MB per
    half-million rows, for a Parquet writer to hash back into one value."""
    names = list(parts[0].provenance)
    tables = [_without(t, names) for t in _tables([part.rows for part in parts])]
    if not dictionaries or len({t.schema for t in tables}) > 1:
        tables = [lake.decoded(t) for t in tables]
    rows = pa.concat_tables(tables, promote_options="permissive")
    sizes = [len(part) for part in parts]
    # Dictionary columns the parser made stay so (`dictionaries`).
    target = pa.schema([rows.schema.field(f.name) if f.name in rows.schema.names
                        and pa.types.is_dictionary(rows.schema.field(f.name).type) else f for f in schema])
    for name in names:
        kind = schema.field(name).type
        # Each distinct value once (a file's pieces share theirs): Parquet spells out a
        # dictionary column whose dictionary repeats a value.
        distinct: dict = {}
        codes = [distinct.setdefault(part.provenance[name], len(distinct)) for part in parts]
        owner = pa.array(np.repeat(np.array(codes, np.int32), sizes))
        values = pa.array(list(distinct), kind)
        if dictionaries and pa.types.is_string(kind):
            rows = rows.append_column(name, pa.DictionaryArray.from_arrays(owner, values))
            target = target.set(target.get_field_index(name), pa.field(name, rows.schema.field(name).type))
        else:
            rows = rows.append_column(name, values.take(owner))
    return rows.select(schema.names).cast(target)


def _tables(parts: list[pa.Table | Batch]) -> list[pa.Table]:
    """Parsed rows as Arrow tables, in order: each run of one kind of Batch in one go."""
    out = []
    for kind, run in groupby(parts, key=type):
        run = list(run)
        out += run if issubclass(kind, pa.Table) else [kind.arrow(run)]
    return out


def _without(rows: pa.Table, names: list[str]) -> pa.Table:
    present = [n for n in names if n in rows.column_names]
    return rows.drop_columns(present) if present else rows


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


def parse_batch(parse: Callable[[Path], Parsed], paths: list[Path], timeout_s: float,
                parse_head: Callable[[Path, bytes, bool], Parsed] | None = None,
                ) -> list[tuple[str, Parsed]]:
    """Each file's content hash and whole parse (a pool worker's job)."""
    out = []
    for p in paths:
        if parse_head is None:
            out.append((sha256_file(p), _whole(parse_bounded(parse, p, timeout_s))))
            continue
        digest, head, complete = hash_head(p)
        out.append((digest, _whole(parse_bounded(
            lambda path: parse_head(path, head, complete), p, timeout_s))))
    return out


def _whole(out: Parsed | Iterator[Parsed]) -> Parsed:
    """A pieced parse collected into one Parsed, to travel back from a worker."""
    if isinstance(out, Parsed):
        return out
    whole, parts = Parsed(), {}
    try:
        for piece in out:
            whole.problems += piece.problems
            if piece.fatal:
                return Parsed(problems=whole.problems, fatal=True)
            for table, rows in piece.rows.items():
                parts.setdefault(table, []).append(rows)
    except Exception as e:  # a parser bug must not take the batch down with it
        return Parsed(problems=whole.problems + [Problem(
            f"Could not be read ({type(e).__name__}: {e}).")], fatal=True)
    whole.rows = {t: ([r for part in p for r in part] if isinstance(p[0], list)
                      else pa.concat_tables(_tables(p))) for t, p in parts.items()}
    return whole


def _overran(timeout_s: float) -> Parsed:
    return Parsed(problems=[Problem(
        f"Parsing took longer than {timeout_s:g} seconds, so the file was set aside; "
        "check whether it is truncated or malformed.")], fatal=True)


def _load(parse) -> None:
    """Pool initializer: receiving `parse` imports its module before work arrives."""


class _Pool(multiprocessing.pool.Pool):
    """A pool whose worker-maintenance thread is not woken by every result. The standard
    one (CPython 3.8+) also waits on the result pipe, so it spins for as long as a result
    sits there unread: with this process busy (the GIL held), that spin cost a third of
    the main process's CPU on a 20,000-file DICOM run (bench/dicom.py). It still wakes
    when a worker dies (its sentinel), on close and terminate, and when the task cache
    empties (the change notifier); the workers here never retire on their own (no
    `maxtasksperchild`), which is what the result pipe's wake-ups were for."""

    def _get_sentinels(self):
        return [self._change_notifier._reader]

    @staticmethod
    def Process(ctx, *args, **kwds):
        """Workers that `terminate` stops with SIGKILL, not SIGTERM: a worker inherits an
        ignored SIGTERM (Dagster maps it to SIGINT's handler, which a shell's background
        job ignores), and one that ignores it would hang the pool's terminate, and the
        run with it. Terminating abandons a worker's work either way."""
        worker = ctx.Process(*args, **kwds)
        worker.terminate = worker.kill
        return worker


class _Parser:
    """Parses files in order, in this process or, once `start`ed, on a pool of spawned
    processes (a fork would copy the Delta and Dagster threads' locks). Work runs a
    bounded window ahead of the caller, so parsing overlaps the caller's Delta writes.
    If a worker stops answering (stuck where the timer cannot reach), the pool is
    replaced and the file that hangs quarantined."""

    def __init__(self, parse, workers: int, timeout_s: float, parse_head=None):
        self.parse, self.workers, self.timeout_s = parse, workers, timeout_s
        self.parse_head = parse_head
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
            self.pool = _Pool(self.workers, initializer=_load, initargs=(self.parse,),
                              context=multiprocessing.get_context("spawn"))
            self.pooled = True

    def map(self, paths: list[Path]):
        if not self.pooled:
            for path in paths:  # lazily parsed: a file skipped by its hash is not read
                yield sha256_file(path), Reparsable(self.parse, path, self.timeout_s)
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
                    parse_batch, (self.parse, batch, self.timeout_s, self.parse_head))))
            batch, job = pending.popleft()
            try:
                for digest, parsed in job.get(timeout=self.timeout_s * len(batch) + 10):
                    yield digest, [parsed]
            except multiprocessing.TimeoutError:
                # A worker stuck where its timer cannot reach: replace the pool, retry
                # the batch file by file, and set aside the file that hangs alone.
                self.pool.terminate()
                self.pool = None
                rest = [b for b, _ in pending]
                pending.clear()
                if len(batch) == 1:
                    yield sha256_file(batch[0]), [_overran(self.timeout_s)]
                    queue.extendleft(reversed(rest))
                else:
                    queue.extendleft(reversed([[p] for p in batch] + rest))


def _ingest_chunk(modality: Modality, chunk: list[tuple[Path, str, tuple]],
                  results: list[Iterable[Parsed]], batch_id: str, summary: IngestSummary,
                  writer: _Writer) -> None:
    """Parse one chunk of files and hand its writes to `writer`: `results` holds each
    file's parse, as pieces."""
    at = now()
    buffer = _Buffer(modality, summary, writer, at)
    quarantine, ledger = [], []
    for (path, digest, (uri, size, mtime)), pieces in zip(chunk, results):
        provenance = dict(source_uri=uri, source_sha256=digest, batch_id=batch_id, ingested_at=at)
        n, problems, fatal, status = _read_file(buffer, pieces, digest, provenance,
                                                modality.flush_rows or FLUSH_ROWS, modality.flush_idle_rows)
        if fatal:
            buffer.discard(digest, streamed=modality.streams)
            n = 0
        for p in problems:
            quarantine.append(dict(source_uri=uri + p.where, source_sha256=digest,
                                   modality=modality.name, error=p.error, detected_at=at,
                                   batch_id=batch_id))
        summary.problems += len(problems)
        status = "quarantined" if fatal else (status or ("partial" if problems else "ingested"))
        if fatal:
            summary.files_quarantined += 1
        else:
            summary.files_ingested += 1
        ledger.append(dict(source_uri=uri, source_sha256=digest, modality=modality.name,
                           status=status, rows=n, problems=len(problems),
                           size_bytes=size, batch_id=batch_id, ingested_at=at, mtime_ns=mtime))

    batches = buffer.take()
    writer.submit(lambda: _finish_chunk(buffer, batches, quarantine, ledger))


def _read_file(buffer: _Buffer, pieces: Iterable[Parsed], digest: str, provenance: dict,
               flush_rows: int, idle_rows: int | None = None) -> tuple[int, list[Problem], bool, str | None]:
    """Buffer one file's pieces, flushing whenever `flush_rows` are buffered, or
    `idle_rows` while the writer is idle; returns its rows, problems, whether it is
    fatal, and the status its parser gave.

    Among other writers, a streamed file's rows must not land before the whole file is
    known good: another writer may MERGE a file sharing its keys meanwhile, find them
    stored and insert nothing, and the delete by hash that cleans up a file turning bad
    would take those rows with it. So the first time such a file would flush its own
    rows, the rest of it is read through for a fatal problem first (its rows dropped as
    they come, memory stays bounded), and only a good file is parsed again and landed.
    A sole writer needs no such pass: it merges earlier files' rows first (module
    docstring)."""
    check = not buffer.writer.sole and isinstance(pieces, Reparsable)
    n, problems, status = 0, [], None
    it = iter(pieces)
    while (parsed := next(it, None)) is not None:
        status = status or parsed.status
        problems += parsed.problems
        if parsed.fatal:
            return n, problems, True, status
        for table, table_rows in parsed.rows.items():
            n += buffer.add(table, table_rows, digest, provenance, table in parsed.distinct)
        early = idle_rows and not check and buffer.size >= idle_rows and buffer.writer.idle()
        if buffer.size < flush_rows and not early:
            continue
        if check and digest not in buffer.flushed:
            check = False
            for rest in it:
                problems += rest.problems
                if rest.fatal:
                    return n, problems, True, status
            buffer.discard(digest)  # nothing of it was flushed: only the buffered rows go
            n, problems, status = 0, [], None
            it = iter(pieces)  # the second parse, which lands the rows
            continue
        buffer.flush(last=digest)
    return n, problems, False, status


def _finish_chunk(buffer: _Buffer, batches: list, quarantine: list[dict], ledger: list[dict]) -> None:
    """A chunk's last rows, its quarantine entries, and then its log (one writer job)."""
    buffer.write(batches)
    if quarantine:
        lake.merge(QUARANTINE, _dedupe(pa.Table.from_pylist(quarantine, QUARANTINE_SCHEMA),
                                       ["source_uri", "source_sha256"], None),
                   ["source_uri", "source_sha256"], sole_writer=buffer.writer.sole,
                   handle=buffer.writer.table(QUARANTINE))
    # Last: only now are these files done. See the module docstring.
    lake.merge(INGEST_LOG, pa.Table.from_pylist(ledger, LOG_SCHEMA),
               ["source_uri", "source_sha256"], sole_writer=buffer.writer.sole,
               handle=buffer.writer.table(INGEST_LOG))
    if buffer.leftovers_since is not None:
        _unlog_since(buffer)


def _unlog_since(buffer: _Buffer) -> None:
    """Un-log the files that landed since a killed run left rows of a file now found bad
    (the rows are deleted): a key such a file shares with them was found stored by its
    MERGE and not inserted. `ingest` lands them again before it returns, and their MERGEs
    insert what the delete took."""
    since, modality = buffer.leftovers_since, buffer.summary.modality
    where = (f"modality = '{modality}' AND status <> 'quarantined' "
             f"AND ingested_at >= '{since.isoformat()}'")
    uris = lake.read(INGEST_LOG, f"SELECT source_uri FROM t WHERE {where}").column(0).to_pylist()
    buffer.writer.handles.pop(INGEST_LOG, None)  # the delete commits through its own handle
    lake.delete(INGEST_LOG, where)
    buffer.summary.unlogged += uris
    buffer.leftovers_since = None
    if uris:
        log.warning("%s: a bad file had rows left by a killed run since %s; %d files logged "
                    "since may have relied on them and land again", modality, since.isoformat(),
                    len(uris))
