"""LanceDB `clinical_chunks`: incremental sync from the lake's text tables.

Sync is incremental by content hash: a chunk whose text (and model) is unchanged is
never re-embedded, changed chunks are replaced with `merge_insert`, and chunks of
documents that disappeared are deleted. Nothing changed means nothing written. Each
chunk records the table, Delta version and row key it came from.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow as pa

from assets.retrieval import embedder
from assets.retrieval.chunking import chunk_text
from medlake.config import get_settings

TABLE = "clinical_chunks"
SOURCE_TABLE = "silver.document"
SOURCE_KEY = "document_id"  # the column of SOURCE_TABLE that `source_key` holds


@dataclass(frozen=True)
class Source:
    """A lake table whose text is embedded; `sql` yields the chunk's document columns."""
    table: str
    key: str
    sql: str


SOURCES = (
    Source(SOURCE_TABLE, SOURCE_KEY,
           "SELECT document_id, person_key, doc_type, CAST(doc_date AS DATE) AS doc_date, "
           "text FROM t WHERE text IS NOT NULL ORDER BY document_id"),
    # One row per imaging study, written by the imaging domain's dbt model. Keyed by the
    # study: its report_id is the report's document_id in silver.document, and chunk ids
    # must stay unique across sources.
    Source("gold.imaging_report", "study_uid",
           "SELECT study_uid AS document_id, person_key, 'Imaging report' AS doc_type, "
           "CAST(study_date AS DATE) AS doc_date, text FROM t "
           "WHERE text IS NOT NULL AND study_uid IS NOT NULL ORDER BY study_uid"),
)

SCHEMA = pa.schema([
    ("chunk_id", pa.string()), ("document_id", pa.string()), ("person_key", pa.string()),
    ("doc_type", pa.string()), ("doc_date", pa.date32()), ("chunk_index", pa.int32()),
    ("section", pa.string()), ("text", pa.string()),
    ("vector", pa.list_(pa.float32(), embedder.DIM)),
    ("source_table", pa.string()), ("source_version", pa.int64()), ("source_key", pa.string()),
    ("content_hash", pa.string()), ("embed_model", pa.string()),
])


@dataclass
class SyncResult:
    chunks: int = 0
    embedded: int = 0
    deleted: int = 0
    unchanged: int = 0
    version: int | None = None
    sources: dict[str, int] = field(default_factory=dict)  # table -> Delta version read


def connect(**kwargs):
    """The LanceDB database, a local folder or an s3:// prefix (MEDLAKE_VECTORS_URI)."""
    import lancedb

    settings = get_settings()
    return lancedb.connect(settings.vectors, **kwargs,
                           storage_options=settings.storage_options(settings.vectors, lance=True))


def open_table(db=None):
    db = db or connect()
    listed = db.list_tables()
    names = getattr(listed, "tables", listed)
    return db.open_table(TABLE) if TABLE in names else None


_readers: dict[str, object] = {}


def reader(fresh: bool = False):
    """The chunks table for searches: opened once per process and lake, on a connection
    that checks for a newer version at every read (read_consistency_interval=0), so it
    sees each sync's writes. Opening it anew (listing, manifest, index metadata) cost
    ~25 ms of a ~100 ms hybrid search at 100k chunks (bench/ask.py). `fresh` reopens it
    (after the table was dropped and rebuilt under the handle)."""
    path = get_settings().vectors
    tbl = None if fresh else _readers.get(path)
    if tbl is None:
        tbl = open_table(connect(read_consistency_interval=timedelta(0)))
        if tbl is not None:
            _readers[path] = tbl
    return tbl


def _existing(tbl) -> dict[str, tuple[str, str]]:
    """chunk_id -> (content_hash, source_table), from a scan that leaves vectors on disk."""
    if tbl is None:
        return {}
    got = tbl.search().select(["chunk_id", "content_hash", "source_table"]).limit(None).to_arrow()
    return dict(zip(got.column(0).to_pylist(),
                    zip(got.column(1).to_pylist(), got.column(2).to_pylist())))


def _quoted(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def sync(batches: list[tuple[Source, int, list[dict]]],
         progress: Callable[[str], None] | None = None,
         embed: Callable[[list[str]], object] | None = None) -> SyncResult:
    """Bring `clinical_chunks` in line with `batches`: (source, Delta version, rows).

    Only the sources given are reconciled: chunks of a source left out (its table does
    not exist yet) are kept as they are.
    """
    embed = embed or embedder.embed
    db = connect()
    tbl = open_table(db)
    if tbl is not None and tbl.schema.names != SCHEMA.names:
        # Written by an older layout: rebuilt once, since every hash changes with it.
        db.drop_table(TABLE)
        tbl = None
    have = _existing(tbl)
    model = embedder.model_name()
    wanted, todo = set(), []
    for source, version, docs in batches:
        for doc in docs:
            for chunk in chunk_text(doc["document_id"], doc.get("text")):
                digest = chunk.content_hash(model)
                wanted.add(chunk.chunk_id)
                if have.get(chunk.chunk_id, ("",))[0] != digest:
                    todo.append((source, version, doc, chunk, digest))
    synced = {source.table for source, _, _ in batches}
    result = SyncResult(chunks=len(wanted), unchanged=len(wanted) - len(todo),
                        sources={source.table: version for source, version, _ in batches})
    stale = [cid for cid, (_, table) in have.items() if table in synced and cid not in wanted]

    if todo:
        if progress:
            progress(f"embedding {len(todo)} new or changed chunks "
                     f"({result.unchanged} unchanged)")
        vectors = embed([c.text for _, _, _, c, _ in todo])
        rows = [dict(chunk_id=c.chunk_id, document_id=d["document_id"],
                     person_key=d.get("person_key"), doc_type=d.get("doc_type"),
                     doc_date=d.get("doc_date"), chunk_index=c.chunk_index,
                     section=c.section, text=c.text, vector=list(map(float, v)),
                     source_table=src.table, source_version=ver, source_key=d["document_id"],
                     content_hash=h, embed_model=model)
                for (src, ver, d, c, h), v in zip(todo, vectors)]
        data = pa.Table.from_pylist(rows, SCHEMA)
        if tbl is None:
            tbl = db.create_table(TABLE, data, schema=SCHEMA)
        else:
            (tbl.merge_insert("chunk_id").when_matched_update_all()
             .when_not_matched_insert_all().execute(data))
        result.embedded = len(rows)
    if stale and tbl is not None:
        for i in range(0, len(stale), 1000):  # bounded predicate size
            tbl.delete(f"chunk_id IN ({_quoted(stale[i:i + 1000])})")
        result.deleted = len(stale)
    if tbl is None:  # no documents at all yet: an empty table keeps readers working
        tbl = db.create_table(TABLE, schema=SCHEMA)
    if todo or stale:
        from assets.retrieval import search

        search.ensure_indexes(tbl, progress=progress)
    result.version = tbl.version
    return result


# The search API lives in its own module; re-exported here because callers (serving)
# import it from this one.
from assets.retrieval.search import Hit, search  # noqa: E402,F401
