"""`medlake serve-llm`: the vLLM command built from configuration, and the clear
errors where vLLM or a GPU is missing (vLLM is the `gpu` extra, absent here)."""
import importlib.util

import pytest

from medlake.cli import main
from medlake.config import get_settings
from serving import vllm


def test_command_comes_from_configuration(monkeypatch):
    monkeypatch.setenv("MEDLAKE_LLM_MODEL", "/models/qwen2.5-7b-instruct")
    monkeypatch.setenv("MEDLAKE_VLLM_TENSOR_PARALLEL", "4")
    monkeypatch.setenv("MEDLAKE_VLLM_GPU_MEMORY", "0.85")
    monkeypatch.setenv("MEDLAKE_VLLM_MAX_MODEL_LEN", "16384")
    monkeypatch.setenv("MEDLAKE_VLLM_PORT", "9001")
    monkeypatch.setenv("MEDLAKE_LLM_API_KEY", "sk-secret-key")
    s = get_settings()
    cmd = vllm.command(s)
    assert cmd[0].endswith("vllm") and cmd[1:3] == ["serve", "/models/qwen2.5-7b-instruct"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    assert flags == {"--served-model-name": "/models/qwen2.5-7b-instruct",
                     "--host": "0.0.0.0", "--port": "9001", "--tensor-parallel-size": "4",
                     "--gpu-memory-utilization": "0.85", "--max-model-len": "16384"}
    # The key goes to vLLM's environment, not into the process list.
    assert "sk-secret-key" not in " ".join(cmd)
    assert vllm.environment(s) == {"VLLM_API_KEY": "sk-secret-key"}


def test_dry_run_prints_the_command(monkeypatch, capsys):
    monkeypatch.setenv("MEDLAKE_LLM_MODEL", "my-model")
    assert main(["serve-llm", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "serve my-model" in out and "--tensor-parallel-size 1" in out


@pytest.mark.parametrize("env,words", [
    ({}, "MEDLAKE_LLM_MODEL is not set"),
    ({"MEDLAKE_LLM_MODEL": "m", "MEDLAKE_VLLM_GPU_MEMORY": "1.5"}, "between 0 and 1"),
    ({"MEDLAKE_LLM_MODEL": "m", "MEDLAKE_VLLM_TENSOR_PARALLEL": "0"}, "positive integers"),
])
def test_bad_configuration_fails_with_a_clear_message(monkeypatch, capsys, env, words):
    monkeypatch.delenv("MEDLAKE_LLM_MODEL", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(["serve-llm"]) == 2
    assert words in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                    reason="vLLM is installed (gpu extra); the missing-vLLM path cannot happen")
def test_missing_vllm_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setenv("MEDLAKE_LLM_MODEL", "m")
    assert main(["serve-llm"]) == 2
    assert "pip install 'medlake[gpu]'" in capsys.readouterr().err


def test_missing_gpu_or_too_few_gpus_is_explained(monkeypatch):
    monkeypatch.setenv("MEDLAKE_LLM_MODEL", "m")
    monkeypatch.setenv("MEDLAKE_VLLM_TENSOR_PARALLEL", "2")
    # Pretend vLLM is installed, so the GPU checks are what is left to fail.
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "vllm" else real(name, *a))
    monkeypatch.setattr(vllm, "gpus", lambda: 0)
    with pytest.raises(vllm.LaunchError, match="No CUDA GPU is visible"):
        vllm.preflight(get_settings())
    monkeypatch.setattr(vllm, "gpus", lambda: 1)
    with pytest.raises(vllm.LaunchError, match="only 1 GPU"):
        vllm.preflight(get_settings())
