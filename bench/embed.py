"""Embedding throughput: medlake's embedder against raw SentenceTransformer.encode on the
same texts in the same run, on the configured device (MEDLAKE_EMBED_DEVICE=cpu|cuda).

    .venv/bin/python bench/embed.py [--texts FILE.json] [--n 256] [--reference REF.npy]

Without --texts it embeds chunks of freshly generated clinical notes. With
--reference (vectors saved by an earlier run, e.g. on the CPU in fp32) it reports the
cosine similarity of this run's vectors to those, to show the device changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def sample_texts(patients: int = 40) -> list[str]:
    """Note-sized chunks from freshly generated notes, cut as the pipeline cuts them."""
    import base64
    import tempfile
    from pathlib import Path

    from assets.retrieval.chunking import chunk_text
    from medlake.generate import generate

    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), patients=patients, seed=5)
        for f in sorted(Path(tmp, "fhir").glob("*.json")):
            for e in json.loads(f.read_text())["entry"]:
                r = e["resource"]
                if r["resourceType"] == "DocumentReference":
                    note = base64.b64decode(r["content"][0]["attachment"]["data"]).decode()
                    texts += [c.text for c in chunk_text(r["id"], note)]
    return texts


def rate(fn, texts: list[str], repeats: int = 3) -> tuple[float, np.ndarray]:
    fn(texts[:8])  # warm-up: model load, kernels, allocator
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(texts)
        best = min(best, time.perf_counter() - t)
    return len(texts) / best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--reference")
    ap.add_argument("--save")
    a = ap.parse_args()
    texts = json.load(open(a.texts)) if a.texts else sample_texts()
    texts = (texts * (a.n // max(1, len(texts)) + 1))[:a.n]

    from assets.retrieval import embedder
    from medlake.config import get_settings

    s = get_settings()
    raw = embedder._model(embedder.model_path(), s.embed_device)
    raw_rate, raw_vecs = rate(lambda t: raw.encode(t, batch_size=s.embed_batch,
                                                   normalize_embeddings=True), texts)
    ours_rate, ours = rate(embedder.embed, texts)
    words = sum(len(t.split()) for t in texts) / len(texts)
    print(f"device={s.embed_device} texts={len(texts)} mean_words={words:.0f} "
          f"batch={s.embed_batch}")
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


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
