"""`medlake serve-llm`: the `vllm serve` command, built from configuration.

vLLM is the optional `gpu` extra (`pip install 'medlake[gpu]'`) and needs a CUDA GPU;
where either is missing the launcher says which, instead of failing deep inside vLLM.
"""
from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

from medlake.config import Settings


class LaunchError(RuntimeError):
    pass


def command(settings: Settings) -> list[str]:
    """`vllm serve ...` serving MEDLAKE_LLM_MODEL under that same name, so the RAG
    service's requests (model=MEDLAKE_LLM_MODEL) reach it."""
    if not settings.llm_model:
        raise LaunchError("MEDLAKE_LLM_MODEL is not set: name the model to serve (a Hugging "
                          "Face id or a local weights folder), e.g. "
                          "MEDLAKE_LLM_MODEL=/models/Qwen2.5-7B-Instruct.")
    if not 0 < settings.vllm_gpu_memory <= 1:
        raise LaunchError(f"MEDLAKE_VLLM_GPU_MEMORY is {settings.vllm_gpu_memory}; it is a "
                          "fraction of GPU memory between 0 and 1, e.g. 0.9.")
    if settings.vllm_tensor_parallel < 1 or settings.vllm_max_model_len < 1:
        raise LaunchError("MEDLAKE_VLLM_TENSOR_PARALLEL and MEDLAKE_VLLM_MAX_MODEL_LEN must be "
                          "positive integers.")
    cmd = [_vllm(), "serve", settings.llm_model,
           "--served-model-name", settings.llm_model,
           "--host", settings.vllm_host, "--port", str(settings.vllm_port),
           "--tensor-parallel-size", str(settings.vllm_tensor_parallel),
           "--gpu-memory-utilization", str(settings.vllm_gpu_memory),
           "--max-model-len", str(settings.vllm_max_model_len)]
    return cmd


def environment(settings: Settings) -> dict[str, str]:
    """Extra environment for vLLM: the API key travels here, not on the command line
    where any local user could read it in the process list."""
    key = settings.llm_api_key
    return {"VLLM_API_KEY": key} if key and key != "EMPTY" else {}


def _vllm() -> str:
    beside = Path(sys.executable).with_name("vllm")
    return str(beside) if beside.exists() else (shutil.which("vllm") or "vllm")


def gpus() -> int:
    """CUDA devices torch can see (0 without a GPU or a CUDA build of torch)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def preflight(settings: Settings) -> None:
    """Raise LaunchError saying what to do when vLLM cannot run here."""
    if importlib.util.find_spec("vllm") is None:
        raise LaunchError("vLLM is not installed in this environment: install the GPU extra "
                          "with `pip install 'medlake[gpu]'` on a machine with an NVIDIA GPU, "
                          "or point MEDLAKE_LLM_BASE_URL at a running vLLM server.")
    have = gpus()
    if have == 0:
        raise LaunchError("No CUDA GPU is visible (torch.cuda.is_available() is False): run "
                          "`medlake serve-llm` on a GPU machine, or point "
                          "MEDLAKE_LLM_BASE_URL at a running vLLM server.")
    if have < settings.vllm_tensor_parallel:
        raise LaunchError(f"MEDLAKE_VLLM_TENSOR_PARALLEL is {settings.vllm_tensor_parallel} "
                          f"but only {have} GPU(s) are visible; lower it to {have} or fewer.")
