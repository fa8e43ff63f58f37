"""Search over `clinical_chunks`: vector (cosine), full text (LanceDB's native FTS
index) and hybrid (reciprocal rank fusion of the two), with filters by person, note
type and date range.

Below `ANN_THRESHOLD` rows a vector query scans every vector exactly (milliseconds at
that size). Past it an IVF_PQ index is built, and its query parameters (partitions
probed, candidates re-ranked on the full vectors) are chosen by measuring recall@10
against exact search on a sample of the table's own vectors: the cheapest setting
that reaches `TARGET_RECALL` is stored beside the table and used by every query.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date

import numpy as np

ANN_THRESHOLD = 50_000
TARGET_RECALL = 0.97  # measured on a sample; the floor promised is 0.95
RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
# (nprobes, refine_factor) from cheap to thorough, tried in order.
ANN_LADDER = ((8, 5), (16, 10), (32, 10), (64, 20), (128, 40), (256, 50))
MODES = ("hybrid", "vector", "fts")


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
    section: str | None = None


def _settings_path() -> str:
    """Beside the table, wherever LanceDB lives (a folder or an s3:// prefix)."""
    from medlake.config import get_settings

    return get_settings().vectors.rstrip("/") + "/clinical_chunks.ann.json"


def ann_settings() -> dict | None:
    from medlake import storage

    text = storage.read_text(_settings_path())
    return json.loads(text) if text is not None else None


def _has_index(tbl, column: str) -> bool:
    return any(column in ix.columns for ix in tbl.list_indices())


def _top(tbl, q, k: int, exact: bool, nprobes: int = 0, refine: int = 0) -> set[str]:
    query = tbl.search(q).distance_type("cosine").select(["chunk_id"]).limit(k)
    query = query.bypass_vector_index() if exact else \
        query.nprobes(nprobes).refine_factor(refine)
    return {r["chunk_id"] for r in query.to_list()}


def recall_at_k(tbl, queries: np.ndarray, k: int, nprobes: int, refine: int,
                exact: list[set[str]] | None = None) -> float:
    """Share of the exact top-k that the index returns, averaged over `queries`."""
    exact = exact or [_top(tbl, q, k, True) for q in queries]
    found = sum(len(e & _top(tbl, q, k, False, nprobes, refine)) for q, e in zip(queries, exact))
    return found / sum(len(e) for e in exact)


def tune_ann(tbl, samples: int = 50, k: int = 10, seed: int = 0) -> dict:
    """The cheapest (nprobes, refine_factor) whose recall@k on a sample of the table's
    own vectors, slightly perturbed, reaches TARGET_RECALL."""
    n = tbl.count_rows()
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(n, size=min(samples, n), replace=False).tolist())
    got = tbl.take_offsets(picked).select(["vector"]).to_arrow().column("vector")
    queries = np.stack(got.to_numpy(zero_copy_only=False)).astype(np.float32)
    queries += rng.normal(0, 0.02, queries.shape).astype(np.float32)  # not the stored point
    exact = [_top(tbl, q, k, True) for q in queries]  # once, for every rung
    chosen = None
    for nprobes, refine in ANN_LADDER:
        r = recall_at_k(tbl, queries, k, nprobes, refine, exact)
        chosen = dict(nprobes=nprobes, refine_factor=refine, recall_at_10=round(r, 4),
                      rows=n, sample=len(queries))
        if r >= TARGET_RECALL:
            break
    from medlake import storage

    storage.write_text(_settings_path(), json.dumps(chosen))
    return chosen


def ensure_indexes(tbl, threshold: int | None = None,
                   progress: Callable[[str], None] | None = None) -> None:
    """FTS on `text` always; the ANN index once the table outgrows exact search."""
    from lancedb.index import IvfPq

    threshold = ANN_THRESHOLD if threshold is None else threshold
    n = tbl.count_rows()
    if n == 0:
        return
    if not _has_index(tbl, "text"):
        tbl.create_fts_index("text", use_tantivy=False, replace=True)
    if n >= threshold and not _has_index(tbl, "vector"):
        if progress:
            progress(f"{n} chunks: building the IVF_PQ vector index")
        started = time.perf_counter()
        tbl.create_index("vector", config=IvfPq(
            distance_type="cosine", num_partitions=max(1, int(math.sqrt(n))),
            num_sub_vectors=48))  # 8 dimensions per sub-vector of 384
        built = time.perf_counter() - started
        chosen = tune_ann(tbl)
        if progress:
            progress(f"IVF_PQ built in {built:.0f}s; tuned to {chosen}")
    else:
        tbl.optimize()  # folds new rows into the existing indexes


def _where(person_key, doc_type, date_from, date_to) -> str | None:
    def lit(v: str) -> str:
        return "'" + str(v).replace("'", "''") + "'"

    parts = []
    if person_key:
        parts.append(f"person_key = {lit(person_key)}")
    if doc_type:
        parts.append(f"doc_type = {lit(doc_type)}")
    if date_from:
        parts.append(f"doc_date >= CAST({lit(date.fromisoformat(str(date_from)))} AS DATE)")
    if date_to:
        parts.append(f"doc_date <= CAST({lit(date.fromisoformat(str(date_to)))} AS DATE)")
    return " AND ".join(parts) or None


COLUMNS = ["chunk_id", "document_id", "person_key", "doc_type", "doc_date", "section",
           "text", "source_table", "source_version", "source_key"]


def _vector(tbl, vector: np.ndarray, k: int, where: str | None) -> list[dict]:
    q = tbl.search(vector).distance_type("cosine").limit(k)
    ann = ann_settings() if _has_index(tbl, "vector") else None
    if ann:
        q = q.nprobes(ann["nprobes"]).refine_factor(ann["refine_factor"])
    if where:
        q = q.where(where, prefilter=True)
    rows = q.select(COLUMNS + ["_distance"]).to_list()
    for r in rows:
        r["score"] = 1.0 - float(r["_distance"])
    return rows


def _fts(tbl, text: str, k: int, where: str | None) -> list[dict]:
    if not text.strip():
        return []
    q = tbl.search(text, query_type="fts", fts_columns="text").limit(k)
    if where:
        q = q.where(where, prefilter=True)
    rows = q.select(COLUMNS + ["_score"]).to_list()
    for r in rows:
        r["score"] = float(r["_score"])
    return rows


def rrf(*rankings: list[dict], k: int = RRF_K) -> list[dict]:
    """Reciprocal rank fusion: each list adds 1/(k + rank) to a chunk's score."""
    fused: dict[str, dict] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking, start=1):
            entry = fused.setdefault(row["chunk_id"], {**row, "score": 0.0})
            entry["score"] += 1.0 / (k + rank)
    return sorted(fused.values(), key=lambda r: (-r["score"], r["chunk_id"]))


def search(query: str, k: int = 10, person_key: str | None = None,
           doc_type: str | None = None, *, mode: str = "hybrid",
           date_from: date | str | None = None, date_to: date | str | None = None,
           vector: np.ndarray | None = None) -> list[Hit]:
    """The `k` best chunks for `query`, within the filters given.

    mode `vector`: cosine similarity of embeddings (score = similarity); `fts`: BM25 on
    the native full-text index (score = BM25); `hybrid`: both, fused by reciprocal
    rank (score = fused RRF score), so exact terms (a drug name, a lab value) and
    paraphrases both find their chunk.
    """
    from assets.retrieval import embedder, vectors

    if mode not in MODES:
        raise ValueError(f"search mode {mode!r} is not one of {', '.join(MODES)}.")
    where = _where(person_key, doc_type, date_from, date_to)
    if mode != "fts" and vector is None:
        vector = embedder.embed([query])[0]
    try:
        rows = _rows(vectors.reader(), mode, query, vector, k, where)
    except (FileNotFoundError, ValueError, RuntimeError, OSError):
        # the table was dropped and rebuilt under the cached handle: reopen it once
        rows = _rows(vectors.reader(fresh=True), mode, query, vector, k, where)
    return [Hit(**{c: r.get(c) for c in COLUMNS}, score=float(r["score"])) for r in rows]


_legs = ThreadPoolExecutor(2, thread_name_prefix="search")


def _rows(tbl, mode: str, query: str, vector, k: int, where: str | None) -> list[dict]:
    if tbl is None or tbl.count_rows() == 0:
        return []
    if mode == "vector":
        return _vector(tbl, vector, k, where)
    if mode == "fts":
        return _fts(tbl, query, k, where)
    depth = max(4 * k, 40)  # fuse deeper lists than asked for, then cut
    # Both legs run in LanceDB's Rust code without the GIL: side by side, a hybrid
    # search costs the slower leg rather than the sum.
    vec = _legs.submit(_vector, tbl, vector, depth, where)
    text = _fts(tbl, query, depth, where)
    return rrf(vec.result(), text)[:k]
