"""Search latency and recall at scale on synthetic 384-d vectors (clustered, like
sentence embeddings): exact search against the auto-built, auto-tuned IVF_PQ index,
both through medlake's `search()`.

    .venv/bin/python bench/search.py [--sizes 100000] [--million] [--queries 100]

For each size: build the table, p50/p95 latency of exact search, build the index the
way the asset does (ensure_indexes: IVF_PQ + parameters tuned to recall@10 >= 0.97 on a
sample), then p50/p95 latency and recall@10 against exact on fresh queries. 1M vectors
(--million) takes a while on a 2-core machine and needs ~2 GB of disk.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import pyarrow as pa


def synthetic(n: int, dim: int, rng) -> np.ndarray:
    centers = rng.normal(size=(max(8, n // 500), dim)).astype(np.float32)
    v = centers[rng.integers(0, len(centers), n)] + \
        0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def table_for(vecs: np.ndarray) -> pa.Table:
    from assets.retrieval import vectors

    n = len(vecs)
    ids = pa.array([f"c{i:08d}" for i in range(n)])
    cols = {
        "chunk_id": ids, "document_id": ids, "person_key": pa.array([f"p{i % 1000}" for i in range(n)]),
        "doc_type": pa.array(["Progress note"] * n), "doc_date": pa.nulls(n, pa.date32()),
        "chunk_index": pa.array(np.zeros(n, np.int32)), "section": pa.array([""] * n),
        "text": pa.array([f"chunk {i}" for i in range(n)]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.reshape(-1)), vecs.shape[1]),
        "source_table": pa.array(["silver.document"] * n),
        "source_version": pa.array(np.ones(n, np.int64)), "source_key": ids,
        "content_hash": pa.array([""] * n), "embed_model": pa.array(["synthetic"] * n),
    }
    return pa.table([cols[f.name] for f in vectors.SCHEMA], schema=vectors.SCHEMA)


def latencies(queries: np.ndarray, k: int = 10, **kw) -> tuple[list[float], list[list[str]]]:
    from assets.retrieval.search import search

    times, results = [], []
    for q in queries:
        t = time.perf_counter()
        hits = search("", k=k, mode="vector", vector=q, **kw)
        times.append((time.perf_counter() - t) * 1000)
        results.append([h.chunk_id for h in hits])
    return times, results


def pct(times: list[float]) -> str:
    return f"p50 {np.percentile(times, 50):7.1f} ms  p95 {np.percentile(times, 95):7.1f} ms"


def run(n: int, n_queries: int, rng) -> None:
    from assets.retrieval import search as search_mod
    from assets.retrieval import vectors

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        vecs = synthetic(n, 384, rng)
        db = vectors.connect()
        t = time.perf_counter()
        tbl = db.create_table(vectors.TABLE, schema=vectors.SCHEMA)
        for i in range(0, n, 100_000):
            tbl.add(table_for(vecs[i:i + 100_000]))
        print(f"\n## {n:,} vectors (384-d), loaded in {time.perf_counter() - t:.1f}s")
        queries = vecs[rng.integers(0, n, n_queries)] + \
            0.02 * rng.normal(size=(n_queries, 384)).astype(np.float32)
        queries = queries.astype(np.float32)
        exact_t, exact = latencies(queries)
        print(f"exact (flat) search:  {pct(exact_t)}")
        t = time.perf_counter()
        search_mod.ensure_indexes(tbl, threshold=min(n, search_mod.ANN_THRESHOLD))
        tuned = search_mod.ann_settings()
        print(f"IVF_PQ built and tuned in {time.perf_counter() - t:.1f}s: {tuned}")
        ann_t, ann = latencies(queries)
        recall = np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(ann, exact)])
        print(f"IVF_PQ search:        {pct(ann_t)}  recall@10 vs exact {recall:.3f}")
        f_t, _ = latencies(queries[:30], person_key="p7")
        print(f"IVF_PQ + person filter (prefilter): {pct(f_t)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000")
    ap.add_argument("--million", action="store_true", help="also run 1,000,000 vectors")
    ap.add_argument("--queries", type=int, default=100)
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")] + ([1_000_000] if a.million else [])
    rng = np.random.default_rng(0)
    print(f"cpus={os.cpu_count()}")
    for n in sizes:
        run(n, a.queries, rng)


if __name__ == "__main__":
    main()
