"""The landing-zone → bronze engine shared by every modality.

A modality supplies a parser (file → rows for one or more tables, plus problems); this
module finds new files, hashes them, writes the rows with idempotent MERGEs, sends bad
input to `bronze.quarantine`, and only then records each file in `bronze.ingest_log`.
Because the log is written last, a run killed half-way re-processes the unfinished
files next time, and the MERGEs make that re-processing harmless.
"""
from __future__ import annotations

import hashlib
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
    rows: dict[str, list[dict]] = field(default_factory=dict)  # table -> rows
    problems: list[Problem] = field(default_factory=list)
    fatal: bool = False  # the whole file is unusable


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


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def to_table(rows: list[dict], schema: pa.Schema) -> pa.Table:
    """Rows → Arrow, column by column: several times faster than `Table.from_pylist`,
    which dominated FHIR ingestion (timestamps above all)."""
    return pa.Table.from_arrays([pa.array([r.get(f.name) for r in rows], f.type) for f in schema],
                                schema=schema)


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


def ingest(modality: Modality, root: Path, batch_id: str, *, chunk_files: int = 200,
           progress: Callable[[int, int], None] | None = None) -> IngestSummary:
    """Ingest every new file under `root` that matches the modality's patterns."""
    summary = IngestSummary(modality.name)
    for spec in modality.tables:
        lake.ensure(spec.name, spec.schema)
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


def _ingest_chunk(modality: Modality, chunk: list[tuple[Path, str]], batch_id: str,
                  summary: IngestSummary) -> None:
    at = now()
    rows: dict[str, list[dict]] = {spec.name: [] for spec in modality.tables}
    quarantine, ledger = [], []
    for path, digest in chunk:
        uri = path.resolve().as_uri()
        try:
            parsed = modality.parse(path)
        except Exception as e:  # a parser bug must not take the batch down with it
            parsed = Parsed(problems=[Problem(f"Could not be read ({type(e).__name__}: {e}).")],
                            fatal=True)
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
        status = "quarantined" if parsed.fatal else ("partial" if parsed.problems else "ingested")
        if parsed.fatal:
            summary.files_quarantined += 1
        else:
            summary.files_ingested += 1
        ledger.append(dict(source_uri=uri, source_sha256=digest, modality=modality.name,
                           status=status, rows=n, problems=len(parsed.problems),
                           size_bytes=path.stat().st_size, batch_id=batch_id, ingested_at=at))

    for spec in modality.tables:
        order = "last_updated" if "last_updated" in spec.schema.names else None
        table_rows = _dedupe(rows[spec.name], spec.keys, order)
        result = lake.merge(spec.name, to_table(table_rows, spec.schema),
                            spec.keys, spec.update_when)
        summary.rows[spec.name] = summary.rows.get(spec.name, 0) + result.inserted + result.updated
    if quarantine:
        lake.merge(QUARANTINE, pa.Table.from_pylist(
            _dedupe(quarantine, ["source_uri", "source_sha256"], None), QUARANTINE_SCHEMA),
            ["source_uri", "source_sha256"])
    # Last: only now are these files done. See the module docstring.
    lake.merge(INGEST_LOG, pa.Table.from_pylist(ledger, LOG_SCHEMA),
               ["source_uri", "source_sha256"])
