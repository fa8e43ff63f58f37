"""LanceDB `clinical_chunks`: incremental sync from `silver.document`, and search.

Sync is incremental by content hash: a chunk whose text (and model) is unchanged is
never re-embedded, changed chunks are replaced with `merge_insert`, and chunks of
documents that disappeared are deleted. Nothing changed means nothing written.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable

import pyarrow as pa

from assets.retrieval import embedder
from assets.retrieval.chunking import chunk_text
from medlake.config import get_settings

TABLE = "clinical_chunks"
SOURCE_TABLE = "silver.document"
SOURCE_KEY = "document_id"  # the column of SOURCE_TABLE that `source_key` holds

SCHEMA = pa.schema([
    ("chunk_id", pa.string()), ("document_id", pa.string()), ("person_key", pa.string()),
    ("doc_type", pa.string()), ("doc_date", pa.date32()), ("chunk_index", pa.int32()),
    ("text", pa.string()), ("vector", pa.list_(pa.float32(), embedder.DIM)),
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


def connect():
    import lancedb

    return lancedb.connect(str(get_settings().vectors))


def open_table(db=None):
    db = db or connect()
    listed = db.list_tables()
    names = getattr(listed, "tables", listed)
    return db.open_table(TABLE) if TABLE in names else None


def _existing(tbl) -> dict[str, str]:
    if tbl is None:
        return {}
    # A scan of two columns only: the vectors stay on disk.
    got = tbl.search().select(["chunk_id", "content_hash"]).limit(None).to_arrow()
    return dict(zip(got.column(0).to_pylist(), got.column(1).to_pylist()))


def sync(documents: list[dict], source_version: int,
         progress: Callable[[str], None] | None = None) -> SyncResult:
    """Bring `clinical_chunks` in line with `documents` (rows of silver.document)."""
    db = connect()
    tbl = open_table(db)
    have = _existing(tbl)
    model = embedder.model_name()
    wanted, todo = {}, []
    for doc in documents:
        for chunk in chunk_text(doc["document_id"], doc.get("text")):
            digest = chunk.content_hash(model)
            wanted[chunk.chunk_id] = digest
            if have.get(chunk.chunk_id) != digest:
                todo.append((doc, chunk, digest))
    result = SyncResult(chunks=len(wanted), unchanged=len(wanted) - len(todo))
    stale = [cid for cid in have if cid not in wanted]

    if todo:
        if progress:
            progress(f"embedding {len(todo)} new or changed chunks "
                     f"({result.unchanged} unchanged)")
        vectors = embedder.embed([c.text for _, c, _ in todo])
        rows = [dict(chunk_id=c.chunk_id, document_id=d["document_id"],
                     person_key=d.get("person_key"), doc_type=d.get("doc_type"),
                     doc_date=d.get("doc_date"), chunk_index=c.chunk_index, text=c.text,
                     vector=v.tolist(), source_table=SOURCE_TABLE,
                     source_version=source_version, source_key=d["document_id"],
                     content_hash=h, embed_model=model)
                for (d, c, h), v in zip(todo, vectors)]
        data = pa.Table.from_pylist(rows, SCHEMA)
        if tbl is None:
            tbl = db.create_table(TABLE, data, schema=SCHEMA)
        else:
            (tbl.merge_insert("chunk_id").when_matched_update_all()
             .when_not_matched_insert_all().execute(data))
        result.embedded = len(rows)
    if stale and tbl is not None:
        ids = ", ".join("'" + c.replace("'", "''") + "'" for c in stale)
        tbl.delete(f"chunk_id IN ({ids})")
        result.deleted = len(stale)
    if tbl is None:  # no documents at all yet: an empty table keeps readers working
        tbl = db.create_table(TABLE, schema=SCHEMA)
    result.version = tbl.version
    return result


@dataclass
class Hit:
    chunk_id: str
    document_id: str
    person_key: str | None
    doc_type: str | None
    doc_date: object
    text: str
    score: float
    source_table: str
    source_version: int
    source_key: str


def search(question: str, k: int = 5, person_key: str | None = None,
           doc_type: str | None = None) -> list[Hit]:
    """Nearest chunks by cosine similarity, optionally within one person or note type."""
    tbl = open_table()
    if tbl is None or tbl.count_rows() == 0:
        return []
    vector = embedder.embed([question])[0]
    query = tbl.search(vector).distance_type("cosine").limit(k)
    filters = []
    if person_key:
        filters.append(f"person_key = '{person_key.replace(chr(39), '')}'")
    if doc_type:
        filters.append(f"doc_type = '{doc_type.replace(chr(39), chr(39) * 2)}'")
    if filters:
        query = query.where(" AND ".join(filters), prefilter=True)
    rows = query.select([f.name for f in SCHEMA if f.name != "vector"] + ["_distance"]).to_list()
    return [Hit(chunk_id=r["chunk_id"], document_id=r["document_id"],
                person_key=r["person_key"], doc_type=r["doc_type"], doc_date=r["doc_date"],
                text=r["text"], score=1.0 - float(r["_distance"]),
                source_table=r["source_table"], source_version=r["source_version"],
                source_key=r["source_key"]) for r in rows]
