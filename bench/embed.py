"""Embedding benchmarks, each a ratio to the raw library doing the same work in the same
run (MEDLAKE_EMBED_DEVICE=cpu|cuda picks the device):

1. throughput of medlake's embedder against raw SentenceTransformer.encode;
2. torch fp32 against ONNX Runtime fp32 and int8 (chunks/s, cosine to fp32);
3. the `clinical_chunks` sync itself on a small generated lake: a full run against raw
   encode of the same chunks, an unchanged re-run against the full run, and recall@10 /
   MRR on known-item questions with torch fp32 against ONNX int8 vectors.

    .venv/bin/python bench/embed.py [--n 256] [--patients 30] [--skip-lake] [--skip-backends]
        [--texts FILE.json] [--reference REF.npy] [--save OUT.npy]

CPU throughput is reported both per wall second and per CPU second of this process:
on a shared machine the second is the steadier measure of the work done.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def generated_notes(folder: Path, patients: int) -> list[dict]:
    """Clinical notes from freshly generated FHIR bundles, scrubbed of identifiers."""
    from medlake import privacy
    from medlake.generate import generate

    generate(folder, patients=patients, seed=5)
    docs = []
    for f in sorted(Path(folder, "fhir").glob("*.json")):
        for e in json.loads(f.read_text())["entry"]:
            r = e["resource"]
            if r["resourceType"] == "DocumentReference":
                note = base64.b64decode(r["content"][0]["attachment"]["data"]).decode()
                docs.append(dict(document_id=r["id"], text=privacy.scrub_text(note)))
    return docs


def sample_texts(patients: int = 40) -> list[str]:
    """Note-sized chunks from freshly generated notes, cut as the pipeline cuts them."""
    from assets.retrieval.chunking import chunk_text

    with tempfile.TemporaryDirectory() as tmp:
        return [c.text for d in generated_notes(Path(tmp), patients)
                for c in chunk_text(d["document_id"], d["text"])]


def rate(fn, texts: list[str], repeats: int = 2) -> tuple[float, float, np.ndarray]:
    """(texts per wall second, texts per CPU second, vectors), best of `repeats`."""
    fn(texts[:8])  # warm-up: model load, kernels, allocator
    wall, cpu, out = float("inf"), float("inf"), None
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn(texts)
        wall = min(wall, time.perf_counter() - t)
        cpu = min(cpu, time.process_time() - c)
    return len(texts) / wall, len(texts) / max(cpu, 1e-9), out


def backends(texts: list[str], device: str) -> None:
    from assets.retrieval import embedder

    print("\n## backends (same texts)")
    kinds = ["torch"] + (["onnx", "onnx-int8"] if device == "cpu" else [])
    ref, base = None, None
    for kind in kinds:
        os.environ["MEDLAKE_EMBED_BACKEND"] = kind
        embedder.encoder()  # ONNX export (first use only) outside the timing
        w, c, vecs = rate(embedder.embed, texts)
        ref = vecs if ref is None else ref
        base = base or (w, c)
        cos = np.sum(ref * vecs, axis=1)
        print(f"{kind:10s} {w:7.1f} chunks/s wall ({w / base[0]:.2f}x)  {c:7.1f} chunks/CPU-s "
              f"({c / base[1]:.2f}x)  cosine to fp32 min {cos.min():.4f} mean {cos.mean():.4f}")
    os.environ.pop("MEDLAKE_EMBED_BACKEND", None)


def lake_run(patients: int) -> None:
    """The asset's own path on a temporary lake: sync, re-sync, retrieval quality."""
    import pyarrow as pa

    from assets.generation.evaluation import known_item_questions
    from assets.retrieval import embedder, vectors
    from assets.retrieval.assets import read_sources
    from assets.retrieval.chunking import chunk_text
    from assets.retrieval.evaluation import evaluate_retrieval
    from medlake import lake

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MEDLAKE_HOME"] = str(Path(tmp, "home"))
        os.environ["MEDLAKE_LAKE_URI"] = str(Path(tmp, "home", "lake"))
        docs = generated_notes(Path(tmp, "landing"), patients)
        rows = [dict(d, person_key=f"p{i % patients}", doc_type="Progress note",
                     doc_date=None) for i, d in enumerate(docs)]
        schema = pa.schema([("document_id", pa.string()), ("person_key", pa.string()),
                            ("doc_type", pa.string()), ("doc_date", pa.date32()),
                            ("text", pa.string())])
        lake.merge(vectors.SOURCE_TABLE, pa.Table.from_pylist(rows, schema), ["document_id"])
        questions = known_item_questions(limit=400)  # all of them: one in 26 was 0.04
        print(f"\n## clinical_chunks sync on {len(docs)} notes, {len(questions)} known-item "
              "questions")
        scores = {}
        for kind in ("torch", "onnx-int8"):
            os.environ["MEDLAKE_EMBED_BACKEND"] = kind
            embedder.encoder()  # model load and any export outside the timing
            batches = read_sources()
            texts = [c.text for d in batches[0][2] for c in chunk_text(d["document_id"], d["text"])]
            embedder.embed(texts[:16])  # warm-up outside the timing
            t = time.perf_counter()
            embedder.embed(texts)
            raw = time.perf_counter() - t
            t = time.perf_counter()
            full = vectors.sync(read_sources())  # a backend switch re-embeds every chunk
            full_s = time.perf_counter() - t
            t = time.perf_counter()
            again = vectors.sync(read_sources())
            again_s = time.perf_counter() - t
            assert again.embedded == 0, "an unchanged re-run embedded something"
            print(f"{kind:10s} full sync {full.embedded} chunks in {full_s:6.1f}s "
                  f"({full.embedded / full_s:5.1f}/s; embedder alone {raw:6.1f}s, ratio "
                  f"{raw / full_s:.2f}); unchanged re-run {again_s:5.2f}s "
                  f"({again_s / full_s:.1%} of full)")
            for mode in ("vector", "hybrid"):
                scores[kind, mode] = evaluate_retrieval(questions, 10, mode=mode)
                print(f"{'':10s} {mode:6s} recall@10 {scores[kind, mode]['recall@10']:.3f} "
                      f"MRR {scores[kind, mode]['mrr']:.3f}")
        for mode in ("vector", "hybrid"):
            d = scores["onnx-int8", mode]["recall@10"] - scores["torch", mode]["recall@10"]
            print(f"recall@10 change int8 vs fp32 ({mode}): {d:+.3f}")
        os.environ.pop("MEDLAKE_EMBED_BACKEND", None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--patients", type=int, default=30)
    ap.add_argument("--skip-lake", action="store_true")
    ap.add_argument("--skip-backends", action="store_true")
    ap.add_argument("--reference")
    ap.add_argument("--save")
    a = ap.parse_args()
    texts = json.load(open(a.texts)) if a.texts else sample_texts()
    texts = (texts * (a.n // max(1, len(texts)) + 1))[:a.n]

    from assets.retrieval import embedder
    from medlake.config import get_settings

    s = get_settings()
    os.environ["MEDLAKE_EMBED_BACKEND"] = "torch"  # raw vs ours on the same backend
    raw = embedder._model(embedder.model_path(), s.embed_device)
    raw_rate, _, _ = rate(lambda t: raw.encode(t, batch_size=s.embed_batch,
                                               normalize_embeddings=True), texts)
    ours_rate, _, ours = rate(embedder.embed, texts)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"device={s.embed_device} texts={len(texts)} mean_words={words:.0f} "
          f"batch={s.embed_batch} cpus={os.cpu_count()}")
    print(f"raw SentenceTransformer.encode: {raw_rate:8.1f} texts/s")
    print(f"medlake embedder.embed:         {ours_rate:8.1f} texts/s "
          f"(ratio to raw {ours_rate / raw_rate:.2f})")
    if a.save:
        np.save(a.save, ours)
    if a.reference:
        ref = np.load(a.reference)
        n = min(len(ref), len(ours))
        cos = np.sum(ref[:n] * ours[:n], axis=1)
        print(f"cosine to reference: min {cos.min():.5f} mean {cos.mean():.5f} over {n} texts")
    if not a.skip_backends:
        backends(texts, s.embed_device)
    if not a.skip_lake:
        lake_run(a.patients)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
