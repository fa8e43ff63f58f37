"""`python -m medlake.deploy`: write the Kubernetes manifests of deploy/k8s/ from settings.

The vLLM container runs the very command `medlake serve-llm` builds
(`serving.vllm.command`), with as many GPUs as its tensor parallel size, and the
MEDLAKE_LLM_BASE_URL that the code location and the RAG service read is derived from the
vLLM Service written here, so the launcher, the manifests and the URL cannot drift apart.
Dagster itself is installed with its official Helm chart (deploy/helm/dagster-values.yaml),
which refers to the ConfigMap, Secret and volume named below.

Secrets never pass through here: they live in the Secret `medlake-secrets`, which the
operator creates (README, "Deploying on Kubernetes").
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from unittest import mock

import yaml

from medlake.config import ENV_VARS, Settings, get_settings
from serving import vllm

NAMESPACE = "medlake"
CONFIG = "medlake-config"   # ConfigMap: the non-secret MEDLAKE_* settings of every pod
SECRET = "medlake-secrets"  # Secret: made by the operator, never rendered or committed
HOME_CLAIM = "medlake-home"  # MEDLAKE_HOME, shared by the code server, run pods and the RAG API
MODELS_CLAIM = "medlake-models"  # vLLM's weights (Hugging Face cache or copied folders)
VLLM = "medlake-vllm"
RAG_API = "medlake-rag-api"
VLLM_PORT = 8000  # the Service's port, in MEDLAKE_LLM_BASE_URL
RAG_PORT = 8080
# The gpu extra pins vllm==0.33.0; the server image is the same release (tests compare).
VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
# deploy/Dockerfile, as pushed by the operator; deploy/helm/dagster-values.yaml names the same.
IMAGE = "registry.example.com/medlake:0.1.0"
UID = 10001  # the image's non-root user (deploy/Dockerfile)
MODELS_DIR = "/models"

# Settings that are secrets: the Secret carries them, a ConfigMap never does.
SECRET_SETTINGS = {"MEDLAKE_PSEUDONYM_KEY", "MEDLAKE_API_TOKENS", "MEDLAKE_LLM_API_KEY",
                   "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
# Set by the deployment: the URL follows the vLLM Service, DAGSTER_HOME is the chart's.
DERIVED = {"MEDLAKE_LLM_BASE_URL", "DAGSTER_HOME"}

# The ConfigMap's settings unless `--set NAME=VALUE` changes them. The model is a Hugging
# Face id that vLLM downloads once into the models volume; a folder copied there
# (`/models/<name>`) serves offline.
DEFAULTS = {
    "MEDLAKE_HOME": "/data/medlake",
    "MEDLAKE_LLM_MODEL": "Qwen/Qwen2.5-7B-Instruct",
    "MEDLAKE_VLLM_TENSOR_PARALLEL": "1",
    "MEDLAKE_VLLM_GPU_MEMORY": "0.9",
    "MEDLAKE_VLLM_MAX_MODEL_LEN": "8192",
}

FILES = ("config.yaml", "storage.yaml", "vllm.yaml", "rag-api.yaml")
HEADER = ("# Rendered by `python -m medlake.deploy` from medlake's settings; change them there\n"
          "# (--set NAME=VALUE) and render again rather than editing this file.\n")


class DeployError(ValueError):
    pass


def llm_base_url(namespace: str = NAMESPACE) -> str:
    return f"http://{VLLM}.{namespace}.svc:{VLLM_PORT}/v1"


def config_values(overrides: dict[str, str] | None = None,
                  namespace: str = NAMESPACE) -> dict[str, str]:
    """The ConfigMap's data: DEFAULTS, then `overrides`, then the derived URL."""
    values = {**DEFAULTS, **(overrides or {})}
    for name in values:
        if name not in ENV_VARS:
            raise DeployError(f"{name} is not a medlake setting; `medlake env` lists them.")
        if name in SECRET_SETTINGS:
            raise DeployError(f"{name} is a secret: put it in the Secret {SECRET} (see the "
                              "README), never in the ConfigMap.")
        if name in DERIVED:
            raise DeployError(f"{name} is set by the deployment itself and cannot be changed "
                              "here.")
    if not values["MEDLAKE_HOME"].startswith("/"):
        raise DeployError("MEDLAKE_HOME must be an absolute path: the shared volume is "
                          "mounted there.")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", namespace):
        raise DeployError(f"{namespace!r} is not a valid Kubernetes namespace name.")
    values["MEDLAKE_LLM_BASE_URL"] = llm_base_url(namespace)
    return values


def settings_for(values: dict[str, str]) -> Settings:
    """The settings a pod with exactly this environment reads (nothing from this shell)."""
    with mock.patch.dict(os.environ, values, clear=True):
        return get_settings()


def _labels(name: str, component: str) -> dict:
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "medlake",
            "app.kubernetes.io/component": component}


def _meta(name: str, namespace: str, component: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": _labels(name, component)}


def _secret_env(name: str, key: str) -> dict:
    # optional: a missing key leaves the variable unset, as it is outside Kubernetes.
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": key,
                                                          "optional": True}}}


def _home(settings: Settings) -> tuple[dict, dict]:
    volume = {"name": HOME_CLAIM, "persistentVolumeClaim": {"claimName": HOME_CLAIM}}
    return volume, {"name": HOME_CLAIM, "mountPath": str(settings.home)}


def config_map(values: dict[str, str], namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(CONFIG, namespace, "config"), "data": dict(values)}


def storage(namespace: str, storage_class: str | None = None) -> list[dict]:
    def claim(name: str, mode: str, size: str, component: str, klass: str | None) -> dict:
        spec = {"accessModes": [mode], "resources": {"requests": {"storage": size}}}
        if klass:
            spec["storageClassName"] = klass
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": _meta(name, namespace, component), "spec": spec}

    # ReadWriteMany: the code server, each run pod and the RAG API mount it at once.
    return [claim(HOME_CLAIM, "ReadWriteMany", "200Gi", "lake", storage_class),
            claim(MODELS_CLAIM, "ReadWriteOnce", "200Gi", "llm", None)]


def _http_probe(path: str, period: int, failures: int, timeout: int = 5) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": timeout, "failureThreshold": failures}


def vllm_manifests(settings: Settings, namespace: str) -> list[dict]:
    try:
        argv = vllm.command(settings)
    except vllm.LaunchError as e:
        raise DeployError(str(e)) from e
    gpus = settings.vllm_tensor_parallel
    container = {
        "name": "vllm",
        "image": VLLM_IMAGE,
        # `medlake serve-llm`'s own command; only the executable's local path is dropped.
        "command": ["vllm"],
        "args": argv[1:],
        "ports": [{"name": "http", "containerPort": settings.vllm_port}],
        "env": [{"name": "HF_HOME", "value": f"{MODELS_DIR}/huggingface"},
                # The key the RAG service sends (MEDLAKE_LLM_API_KEY) is the one vLLM checks.
                _secret_env("VLLM_API_KEY", "MEDLAKE_LLM_API_KEY"),
                _secret_env("HF_TOKEN", "HF_TOKEN")],
        # One GPU per tensor parallel rank; extended resources need requests == limits.
        # Host memory grows with the shards each rank loads.
        "resources": {"requests": {"nvidia.com/gpu": gpus, "cpu": str(4 * gpus),
                                   "memory": f"{32 * gpus}Gi"},
                      "limits": {"nvidia.com/gpu": gpus}},
        # The first start downloads and loads the weights: up to 30 minutes before liveness.
        "startupProbe": _http_probe("/health", 10, 180),
        "readinessProbe": _http_probe("/health", 10, 3),
        "livenessProbe": _http_probe("/health", 30, 3),
        "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(VLLM, namespace, "llm"),
        "spec": {
            "replicas": 1,
            # The new pod needs the old one's GPUs (and its ReadWriteOnce volume).
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": VLLM}},
            "template": {
                "metadata": {"labels": _labels(VLLM, "llm")},
                "spec": {
                    "containers": [container],
                    # GPU nodes are commonly tainted so that only GPU work lands there.
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}],
                    "volumes": [
                        {"name": "models", "persistentVolumeClaim": {"claimName": MODELS_CLAIM}},
                        # Tensor parallel ranks exchange tensors through shared memory;
                        # the container runtime's default /dev/shm is 64 MiB.
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
                    ],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(VLLM, namespace, "llm"),
               "spec": {"selector": {"app.kubernetes.io/name": VLLM},
                        "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http"}]}}
    return [deployment, service]


def rag_api(settings: Settings, namespace: str, image: str) -> list[dict]:
    volume, mount = _home(settings)
    container = {
        "name": "rag-api",
        "image": image,
        "command": ["medlake", "serve", "--host", "0.0.0.0", "--port", str(RAG_PORT)],
        "ports": [{"name": "http", "containerPort": RAG_PORT}],
        # The same settings and secrets as the code location: one lake, one pseudonym key.
        "envFrom": [{"configMapRef": {"name": CONFIG}}, {"secretRef": {"name": SECRET}}],
        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "startupProbe": _http_probe("/health", 10, 30),
        "readinessProbe": _http_probe("/health", 10, 3),
        "livenessProbe": _http_probe("/health", 30, 3),
        "securityContext": {"allowPrivilegeEscalation": False},
        "volumeMounts": [mount],
    }
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(RAG_API, namespace, "api"),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": RAG_API}},
            "template": {
                "metadata": {"labels": _labels(RAG_API, "api")},
                "spec": {
                    "securityContext": {"runAsNonRoot": True, "runAsUser": UID,
                                        "runAsGroup": UID, "fsGroup": UID},
                    "containers": [container],
                    "volumes": [volume],
                },
            },
        },
    }
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": _meta(RAG_API, namespace, "api"),
               "spec": {"selector": {"app.kubernetes.io/name": RAG_API},
                        "ports": [{"name": "http", "port": RAG_PORT, "targetPort": "http"}]}}
    return [deployment, service]


def render(overrides: dict[str, str] | None = None, namespace: str = NAMESPACE,
           image: str = IMAGE, storage_class: str | None = None) -> dict[str, list[dict]]:
    """Every manifest, by the file it goes to."""
    values = config_values(overrides, namespace)
    settings = settings_for(values)
    return {"config.yaml": [config_map(values, namespace)],
            "storage.yaml": storage(namespace, storage_class),
            "vllm.yaml": vllm_manifests(settings, namespace),
            "rag-api.yaml": rag_api(settings, namespace, image)}


def dump(documents: list[dict]) -> str:
    return HEADER + yaml.safe_dump_all(documents, sort_keys=False, explicit_start=True)


def write(out: Path, manifests: dict[str, list[dict]]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, documents in manifests.items():
        path = out / name
        path.write_text(dump(documents))
        written.append(path)
    return written


def _assignment(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m medlake.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="deploy/k8s", help="folder to write (default: "
                        "deploy/k8s)")
    parser.add_argument("--set", dest="settings", action="append", type=_assignment,
                        default=[], metavar="NAME=VALUE",
                        help="a medlake setting for the ConfigMap, e.g. "
                             "MEDLAKE_VLLM_TENSOR_PARALLEL=4 (repeatable)")
    parser.add_argument("--namespace", default=NAMESPACE)
    parser.add_argument("--image", default=IMAGE, help="the image built from "
                        "deploy/Dockerfile (the same as in deploy/helm/dagster-values.yaml)")
    parser.add_argument("--storage-class", help="a ReadWriteMany storage class for "
                        f"{HOME_CLAIM} (default: the cluster's default class)")
    args = parser.parse_args(argv)
    try:
        manifests = render(dict(args.settings), args.namespace, args.image, args.storage_class)
    except DeployError as e:
        print(f"medlake.deploy: {e}", file=sys.stderr)
        return 2
    for path in write(Path(args.out), manifests):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
