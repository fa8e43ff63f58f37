"""The landing-zone → bronze engine shared by every modality.

A modality supplies a parser (file → rows for one or more tables, plus problems); this
module finds new files, hashes them, writes the rows with idempotent MERGEs, sends bad
input to `bronze.quarantine`, and only then records each file in `bronze.ingest_log`.
Because the log is written last, a run killed half-way re-processes the unfinished
files next time, and the MERGEs make that re-processing harmless.

A parser may also yield a file's rows in pieces (a generator of `Parsed`), so a file
larger than memory streams through: rows are merged whenever `FLUSH_ROWS` (or the
modality's own `flush_rows`) are buffered.
If a piece turns out fatal after earlier pieces were merged, the rows that file wrote
(its `source_sha256`) are deleted again before the file is quarantined: a bad file
never stays half-landed. Earlier files' buffered rows are merged before such a file's
own, so on a key both carry the stored row is the earlier file's and that delete never
takes another file's row with it. A run killed before the delete leaves the file
unlogged, so the next run parses it again, meets the same error and deletes them then.

A MERGE is only needed where a key is already stored: a flush whose keys the table does
not hold yet is appended instead (much cheaper for a large new file). Before a file's
first flush into a table, rows carrying its source_sha256 are deleted: the file is not
logged, so they can only be left by a run killed mid-file, and appending its rows again
on top of them would duplicate keys.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from medlake import lake

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
    ("ingested_at", pa.timestamp("us", tz="UTC")),
])


@dataclass
class Problem:
    """Bad input found while parsing. `where` narrows the place inside the file
    (`#entry=3`, `#line=12`); `error` is one sentence a data engineer can act on."""
    error: str
    where: str = ""


@dataclass
class Parsed:
    # table -> rows, as dicts or as an Arrow table (provenance columns are added here)
    rows: dict[str, list[dict] | pa.Table] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # the whole file is unusable


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    keys: list[str]
    update_when: str | None = None  # when a newer row replaces the stored one
    description: str = ""
    partition_by: list[str] | None = None


@dataclass
class Modality:
    name: str
    patterns: list[str]
    tables: list[TableSpec]
    parse: Callable[[Path], Parsed | Iterator[Parsed]]  # one Parsed, or a file in pieces
    flush_rows: int | None = None  # FLUSH_ROWS for this modality (small rows: flush fewer times)


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


def ingested_hashes(modality: str) -> set[str]:
    got = lake.read(INGEST_LOG, f"SELECT DISTINCT source_sha256 FROM t "
                                f"WHERE modality = '{modality}'")
    return set(got.column(0).to_pylist()) if got.num_columns else set()


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


def ingest(modality: Modality, root: Path, batch_id: str, *, chunk_files: int = 200,
           progress: Callable[[int, int], None] | None = None) -> IngestSummary:
    """Ingest every new file under `root` that matches the modality's patterns."""
    summary = IngestSummary(modality.name)
    for spec in modality.tables:
        lake.ensure(spec.name, spec.schema, spec.partition_by)
    lake.ensure(QUARANTINE, QUARANTINE_SCHEMA)
    lake.ensure(INGEST_LOG, LOG_SCHEMA)

    files = find_files(root, modality.patterns) if root.exists() else []
    summary.files_seen = len(files)
    done = ingested_hashes(modality.name)
    todo = []
    for path in files:
        digest = sha256_file(path)
        if digest in done:
            summary.files_skipped += 1
        else:
            todo.append((path, digest))
            done.add(digest)  # the same bytes under two names are ingested once

    for start in range(0, len(todo), chunk_files):
        _ingest_chunk(modality, todo[start:start + chunk_files], batch_id, summary)
        if progress:
            progress(min(start + chunk_files, len(todo)), len(todo))
    return summary


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


def _pieces(parse: Callable, path: Path) -> Iterator[Parsed]:
    """The parser's output as pieces; a parser error, even mid-file, becomes a fatal one."""
    try:
        out = parse(path)
        if isinstance(out, Parsed):
            yield out
        else:
            yield from out
    except Exception as e:  # a parser bug must not take the batch down with it
        yield Parsed(problems=[Problem(f"Could not be read ({type(e).__name__}: {e}).")],
                     fatal=True)


class _Buffer:
    """Rows waiting for a MERGE, per table, tagged with the file they came from."""

    def __init__(self, modality: Modality, summary: IngestSummary):
        self.specs = {spec.name: spec for spec in modality.tables}
        self.summary = summary
        self.tables: dict[str, list[tuple[str, pa.Table]]] = {name: [] for name in self.specs}
        self.size = 0
        self.flushed: set[str] = set()  # files with rows already merged
        self.cleared: set[tuple[str, str]] = set()  # (table, file): a killed run's rows deleted

    def add(self, table: str, rows: list[dict] | pa.Table, digest: str, provenance: dict) -> int:
        spec = self.specs[table]
        if not isinstance(rows, pa.Table):
            rows = pa.Table.from_pylist(rows, spec.schema)
        for name, value in provenance.items():
            column = pa.repeat(pa.scalar(value, spec.schema.field(name).type), rows.num_rows)
            if name in rows.column_names:
                rows = rows.set_column(rows.column_names.index(name), name, column)
            else:
                rows = rows.append_column(name, column)
        self.tables[table].append((digest, rows.select(spec.schema.names).cast(spec.schema)))
        self.size += rows.num_rows
        return rows.num_rows

    def discard(self, digest: str) -> None:
        """Forget a file's rows: drop the buffered ones, delete the merged ones."""
        for name, pending in self.tables.items():
            self.tables[name] = [(d, t) for d, t in pending if d != digest]
        self.size = sum(t.num_rows for pending in self.tables.values() for _, t in pending)
        if digest in self.flushed:
            for name in self.tables:
                deleted = lake.delete(name, f"source_sha256 = '{digest}'")
                self.summary.rows[name] = self.summary.rows.get(name, 0) - deleted

    def flush(self, but: str | None = None) -> None:
        """MERGE the buffered rows, except those of file `but` when given."""
        for name, pending in self.tables.items():
            now_, later = [p for p in pending if p[0] != but], [p for p in pending if p[0] == but]
            self.tables[name] = later
            if not now_:
                continue
            spec = self.specs[name]
            fresh = {(name, d) for d, _ in now_} - self.cleared
            if fresh:  # rows a killed run left for these (unlogged) files: they come again now
                lake.delete(name, "source_sha256 IN (" + ", ".join(sorted(f"'{d}'" for _, d in fresh)) + ")")
                self.cleared |= fresh
            order = "last_updated" if "last_updated" in spec.schema.names else None
            rows = _dedupe(pa.concat_tables(t for _, t in now_), spec.keys, order)
            # A MERGE of keys the table does not hold yet only inserts: append instead, at a
            # fraction of the cost (the usual case for a new file: new sites, new samples).
            if lake.holds_any(name, rows, spec.keys):
                result = lake.merge(name, rows, spec.keys, spec.update_when)
            else:
                result = lake.append(name, rows)
            self.summary.rows[name] = self.summary.rows.get(name, 0) + result.inserted + result.updated
            self.flushed.update(d for d, _ in now_)
        self.size = sum(t.num_rows for pending in self.tables.values() for _, t in pending)


def _ingest_chunk(modality: Modality, chunk: list[tuple[Path, str]], batch_id: str,
                  summary: IngestSummary) -> None:
    at = now()
    buffer = _Buffer(modality, summary)
    quarantine, ledger = [], []
    for path, digest in chunk:
        uri = path.resolve().as_uri()
        provenance = dict(source_uri=uri, source_sha256=digest, batch_id=batch_id, ingested_at=at)
        n, problems, fatal = 0, [], False
        for parsed in _pieces(modality.parse, path):
            problems += parsed.problems
            if parsed.fatal:
                fatal = True
                break
            for table, table_rows in parsed.rows.items():
                n += buffer.add(table, table_rows, digest, provenance)
            if buffer.size >= (modality.flush_rows or FLUSH_ROWS):
                buffer.flush(but=digest)  # earlier files first (module docstring)
                buffer.flush()
        if fatal:
            buffer.discard(digest)
            n = 0
        for p in problems:
            quarantine.append(dict(source_uri=uri + p.where, source_sha256=digest,
                                   modality=modality.name, error=p.error, detected_at=at,
                                   batch_id=batch_id))
        summary.problems += len(problems)
        status = "quarantined" if fatal else ("partial" if problems else "ingested")
        if fatal:
            summary.files_quarantined += 1
        else:
            summary.files_ingested += 1
        ledger.append(dict(source_uri=uri, source_sha256=digest, modality=modality.name,
                           status=status, rows=n, problems=len(problems),
                           size_bytes=path.stat().st_size, batch_id=batch_id, ingested_at=at))

    buffer.flush()
    if quarantine:
        lake.merge(QUARANTINE, _dedupe(pa.Table.from_pylist(quarantine, QUARANTINE_SCHEMA),
                                       ["source_uri", "source_sha256"], None),
                   ["source_uri", "source_sha256"])
    # Last: only now are these files done. See the module docstring.
    lake.merge(INGEST_LOG, pa.Table.from_pylist(ledger, LOG_SCHEMA),
               ["source_uri", "source_sha256"])
