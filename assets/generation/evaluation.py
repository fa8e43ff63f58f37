"""The feedback loop: rated answers exported for evaluation and fine-tuning, and a
known-item question set for measuring retrieval over the generated lake."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from assets.retrieval.vectors import SOURCES, open_table
from medlake import lake
from medlake.config import get_settings
from serving.feedback import FEEDBACK
from serving.rag import AUDIT

EVAL = "gold.eval_dataset"
SCHEMA = pa.schema([
    ("feedback_id", pa.string()), ("answer_id", pa.string()), ("question", pa.string()),
    ("answer", pa.string()), ("model", pa.string()), ("rating", pa.int8()),
    ("comment", pa.string()), ("cited_ok", pa.bool_()),
    # JSON [{chunk_id, source_table, source_version, source_key, score, text}]: the
    # evidence the model was shown, in rank order, with where each piece came from.
    ("contexts", pa.string()), ("asked_at", pa.timestamp("us", tz="UTC")),
    ("given_at", pa.timestamp("us", tz="UTC")),
])


def jsonl_path() -> Path:
    return get_settings().home / "exports" / "eval_dataset.jsonl"


def _chunk_texts(ids: list[str]) -> dict[str, str]:
    tbl = open_table()
    if tbl is None or not ids:
        return {}
    quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in sorted(set(ids)))
    got = (tbl.search().where(f"chunk_id IN ({quoted})").select(["chunk_id", "text"])
           .limit(None).to_arrow())
    return dict(zip(got.column("chunk_id").to_pylist(), got.column("text").to_pylist()))


def rated_answers() -> list[dict]:
    """Every rating joined to the answer it rates, oldest first."""
    feedback, audit = lake.read(FEEDBACK), lake.read(AUDIT)
    if feedback.num_rows == 0 or audit.num_rows == 0:
        return []
    con = duckdb.connect()
    try:
        con.register("feedback", feedback)
        con.register("audit", audit)
        rows = con.sql(
            "SELECT f.feedback_id, f.answer_id, a.question, a.answer, a.model, f.rating, "
            "f.comment, a.cited_ok, coalesce(a.retrieved, a.citations) AS retrieved, "
            "a.asked_at, f.given_at FROM feedback f JOIN audit a USING (answer_id) "
            "ORDER BY f.given_at, f.feedback_id").to_arrow_table().to_pylist()
    finally:
        con.close()
    texts = _chunk_texts([c["chunk_id"] for r in rows for c in orjson.loads(r["retrieved"])])
    for r in rows:
        # A chunk re-chunked or deleted since keeps its provenance; its text is null
        # and can be recovered from source_table at source_version.
        r["contexts"] = orjson.dumps([{**c, "text": texts.get(c["chunk_id"])}
                                      for c in orjson.loads(r.pop("retrieved"))]).decode()
    return rows


def export(rows: list[dict]) -> tuple[lake.WriteResult, Path, bool]:
    """Write the Delta table and the JSONL file, each only when its content changed."""
    lines = b"".join(orjson.dumps({**r, "contexts": orjson.loads(r["contexts"])},
                                  option=orjson.OPT_NAIVE_UTC) + b"\n" for r in rows)
    fp = hashlib.sha256(lines).hexdigest()
    written = lake.replace_if_changed(EVAL, pa.Table.from_pylist(rows, SCHEMA), fp)
    path = jsonl_path()
    changed = not path.exists() or path.read_bytes() != lines
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(lines)
        tmp.replace(path)  # readers never see half a file
    return written, path, changed


SENTENCE = re.compile(r"(?<=[.!?])\s+")


def known_item_questions(limit: int = 40) -> list[dict]:
    """Questions whose answering document is known, from the de-identified notes: for
    each document, its most specific sentence (one that no other document contains,
    preferring ones with numbers, e.g. lab values), asked as a question. Documents are
    read from every table the retrieval layer embeds, as it reads them."""
    docs = [d for source in SOURCES for d in lake.read(source.table, source.sql).to_pylist()]
    sentences = {d["document_id"]: [" ".join(s.split()) for s in SENTENCE.split(d["text"])]
                 for d in docs}
    seen: dict[str, int] = {}
    for ss in sentences.values():
        for s in set(ss):
            seen[s] = seen.get(s, 0) + 1
    out = []
    for d in docs:
        unique = [s for s in sentences[d["document_id"]]
                  if seen[s] == 1 and 8 <= len(s.split()) <= 40 and "[" not in s]
        if not unique:
            continue
        best = max(unique, key=lambda s: (any(c.isdigit() for c in s), len(s.split()), s))
        out.append({"question_id": hashlib.sha256(best.encode()).hexdigest()[:16],
                    "question": f"Which record says: {best.rstrip('.')}?",
                    "document_id": d["document_id"], "person_key": d["person_key"]})
    # A spread over all documents rather than the first few, stable between runs.
    out.sort(key=lambda q: q["question_id"])
    return out[:limit]
