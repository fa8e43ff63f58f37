"""/v1/ask latency without an LLM (retrieval + prompt assembly + durable audit), at
scale on synthetic chunks, sequentially and under concurrent clients.

    .venv/bin/python bench/ask.py [--sizes 10000,100000] [--queries 60] [--clients 20]

Synthetic 384-d vectors are inserted straight into a LanceDB `clinical_chunks` table in
a temporary MEDLAKE_HOME, indexed the way the asset does it (FTS always; IVF_PQ tuned to
recall@10 past the ANN threshold), then, on the same table in the same run:
  search()    the retrieval layer alone (query embedding + hybrid search): the baseline
  prompt      build_prompt over the retrieved chunks (prompt assembly)
  ask()       serving.rag.ask in-process: retrieval + answer + gold.rag_audit commit
  HTTP        POST /v1/ask through uvicorn, one client, then N concurrent clients
Goal: HTTP /v1/ask p50 < 100 ms at 100k chunks, no errors under 20 clients.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).parent)]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LANCE_LOG", "error")

QUESTIONS = [
    "What did the chest CT show?", "Latest HbA1c and glucose?", "Any drug allergies?",
    "Is the atrial fibrillation rate controlled?", "Kidney function trend and eGFR?",
    "Which antibiotics were started for pneumonia?", "Findings of the brain MRI?",
    "Blood pressure at the last visit?", "Current medications for COPD?",
    "Was the mammogram normal?", "Reason for the admission?", "Discharge plan?",
]
TOKEN = "bench-token-0123456789"


def pct(ms: list[float]) -> str:
    return f"p50 {np.percentile(ms, 50):6.1f} ms  p95 {np.percentile(ms, 95):6.1f} ms"


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t = time.perf_counter()
        fn(QUESTIONS[i % len(QUESTIONS)])
        out.append((time.perf_counter() - t) * 1000)
    return out


def build(n: int, rng) -> None:
    from search import synthetic, table_for  # bench/search.py: the same synthetic chunks

    from assets.retrieval import search as search_mod
    from assets.retrieval import vectors

    t = time.perf_counter()
    tbl = vectors.connect().create_table(vectors.TABLE, schema=vectors.SCHEMA)
    for i in range(0, n, 50_000):
        tbl.add(table_for(synthetic(min(50_000, n - i), 384, rng)))
    search_mod.ensure_indexes(tbl)
    print(f"{n:,} chunks loaded and indexed in {time.perf_counter() - t:.1f}s "
          f"(vector index: {'IVF_PQ ' + str(search_mod.ann_settings()) if n >= search_mod.ANN_THRESHOLD else 'none, exact scan'})")


def serve():
    import uvicorn

    from serving.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tokens=f"bench:{TOKEN}"), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def http_ask(client, question: str) -> None:
    r = client.post("/v1/ask", json={"question": question, "k": 5})
    if r.status_code != 200:
        raise RuntimeError(f"{r.status_code}: {r.text[:200]}")


def concurrent(url: str, clients: int, per_client: int) -> tuple[list[float], int, float]:
    import httpx

    times, errors = [], 0
    lock = threading.Lock()

    def worker(c: int) -> None:
        nonlocal errors
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            for i in range(per_client):
                t = time.perf_counter()
                try:
                    http_ask(client, QUESTIONS[(c + i) % len(QUESTIONS)])
                    ok = True
                except Exception:
                    ok = False
                with lock:
                    times.append((time.perf_counter() - t) * 1000)
                    errors += not ok

    t = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    return times, errors, len(times) / (time.perf_counter() - t)


def run(n: int, queries: int, clients: int, rng) -> None:
    import httpx

    from assets.retrieval.search import search
    from serving import rag

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = tmp
        os.environ.pop("MEDLAKE_LLM_BASE_URL", None)
        print(f"\n## {n:,} chunks")
        build(n, rng)
        search(QUESTIONS[0], k=5)  # load the embedding model once, outside the timings
        base = timed(lambda q: search(q, k=5), queries)
        hits = search(QUESTIONS[0], k=5)
        prompt = timed(lambda q: rag.build_prompt(q, hits), queries)
        ask = timed(lambda q: rag.ask(q, k=5, asked_by="bench"), queries)
        server, thread, url = serve()
        try:
            with httpx.Client(base_url=url, timeout=60,
                              headers={"Authorization": f"Bearer {TOKEN}"}) as client:
                http_ask(client, QUESTIONS[0])
                seq = timed(lambda q: http_ask(client, q), queries)
            conc, errors, rps = concurrent(url, clients, max(3, queries // clients * 2))
        finally:
            server.should_exit = True
            thread.join()
        p50 = lambda xs: float(np.percentile(xs, 50))  # noqa: E731
        print(f"search() (embed + hybrid), baseline: {pct(base)}")
        print(f"build_prompt (5 chunks):             {pct(prompt)}")
        print(f"rag.ask() in-process (+ audit):      {pct(ask)}   {p50(ask) / p50(base):.2f}x search")
        print(f"HTTP /v1/ask, 1 client:              {pct(seq)}   {p50(seq) / p50(base):.2f}x search")
        print(f"HTTP /v1/ask, {clients} clients:             {pct(conc)}   {rps:.1f} req/s, "
              f"{errors} errors of {len(conc)}")
        print(f"goal p50 < 100 ms (1 client): {'met' if p50(seq) < 100 else 'NOT met'}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--clients", type=int, default=20)
    a = ap.parse_args()
    print(f"cpus={os.cpu_count()}")
    rng = np.random.default_rng(0)
    for n in (int(s) for s in a.sizes.split(",")):
        run(n, a.queries, a.clients, rng)


if __name__ == "__main__":
    main()
