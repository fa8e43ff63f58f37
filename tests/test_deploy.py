"""deploy/: the Kubernetes manifests, the Helm values for Dagster's chart and the image,
checked offline.

Every Kubernetes object is validated, strictly (an unknown field fails), against
Kubernetes' own JSON schemas as shipped in kubernetes-validate. The Helm values' keys are
checked against the chart's schema models (trimmed below); their Kubernetes fragments
(volumes, mounts, resources, security contexts) against the Kubernetes schemas. The pieces
are checked against each other and against medlake's code. What needs helm, a cluster or
docker (the chart's own templates, the image build) is not checked here.
"""
import importlib
import importlib.util
import json
import re
import shlex
import subprocess
import sys
import tomllib
from fnmatch import fnmatch
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlparse

import dagster as dg
import kubernetes_validate as kv
import pytest
import yaml

from medlake import deploy
from medlake.cli import main as medlake_cli
from medlake.config import ENV_VARS
from medlake.pipeline import DAGSTER_YAML

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
VALUES = DEPLOY / "helm" / "dagster-values.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# The oldest Kubernetes release the manifests are meant for, and the newest with schemas.
K8S_VERSIONS = ["1.29.0", kv.latest_version()]

# The keys of Dagster's Helm chart values that deploy/helm/dagster-values.yaml may use, per
# section, from the chart's schema models in dagster-io/dagster (helm/dagster/schema/schema/
# charts/dagster/values.py; subschema/daemon.py, run_launcher.py, concurrency.py,
# postgresql.py, telemetry.py; charts/dagster_user_deployments/subschema/user_deployments.py),
# which generate the chart's values.schema.json. Trimmed to the sections this file sets.
CHART_KEYS = {
    "": {"dagsterWebserver", "dagster-user-deployments", "postgresql",
         "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis",
         "flower", "ingress", "imagePullSecrets", "computeLogManager", "scheduler",
         "runLauncher", "pythonLogs", "dagsterDaemon", "busybox", "migrate", "telemetry",
         "serviceAccount", "global", "retention", "concurrency", "additionalInstanceConfig"},
    "dagster-user-deployments": {"enabled", "enableSubchart", "imagePullSecrets", "deployments"},
    "dagster-user-deployments.deployments[]": {
        "name", "image", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
        "deploymentNamespace", "port", "replicaCount", "env", "envConfigMaps", "envSecrets",
        "annotations", "nodeSelector", "affinity", "tolerations", "podSecurityContext",
        "securityContext", "resources", "livenessProbe", "readinessProbe", "startupProbe",
        "labels", "volumeMounts", "volumes", "schedulerName", "initContainers",
        "sidecarContainers", "deploymentStrategy"},
    "dagster-user-deployments.deployments[].image": {"repository", "tag", "pullPolicy"},
    "runLauncher": {"type", "config"},
    "runLauncher.config": {"celeryK8sRunLauncher", "k8sRunLauncher", "customRunLauncher"},
    "runLauncher.config.k8sRunLauncher": {
        "image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
        "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
        "failPodOnRunFailure", "resources", "schedulerName", "securityContext", "runK8sConfig"},
    "postgresql": {"image", "enabled", "postgresqlHost", "postgresqlUsername",
                   "postgresqlPassword", "postgresqlDatabase", "postgresqlParams",
                   "postgresqlScheme", "service", "pool"},
    "dagsterDaemon": {
        "enabled", "image", "runCoordinator", "heartbeatTolerance", "env", "envConfigMaps",
        "envSecrets", "deploymentLabels", "labels", "nodeSelector", "affinity", "tolerations",
        "podSecurityContext", "securityContext", "resources", "checkDbReadyInitContainer",
        "livenessProbe", "readinessProbe", "startupProbe", "annotations", "runMonitoring",
        "runRetries", "sensors", "schedules", "backfills", "schedulerName", "logFormat",
        "volumeMounts", "volumes", "initContainerResources", "extraContainers",
        "extraPrependedInitContainers"},
    "dagsterDaemon.runCoordinator": {"enabled", "type", "config"},
    "dagsterDaemon.runRetries": {"enabled", "maxRetries", "retryOnAssetOrOpFailure"},
    "concurrency": {"enabled", "pools", "runs"},
    "concurrency.pools": {"defaultLimit", "granularity", "opGranularityRunBuffer"},
    "telemetry": {"enabled"},
}
CHART_ENUMS = {"runLauncher.type": {"CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"},
               "dagsterDaemon.runCoordinator.type": {"QueuedRunCoordinator",
                                                     "CustomRunCoordinator"},
               "concurrency.pools.granularity": {"run", "op"}}


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def committed() -> dict[str, list[dict]]:
    return {p.name: documents(p.read_text()) for p in sorted((DEPLOY / "k8s").glob("*.yaml"))}


def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def user_deployment() -> dict:
    (only,) = values()["dagster-user-deployments"]["deployments"]
    return only


def find(manifests: dict[str, list[dict]], kind: str, name: str) -> dict:
    found = [d for docs in manifests.values() for d in docs
             if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_spec(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]


def container(deployment: dict) -> dict:
    (only,) = pod_spec(deployment)["containers"]
    return only


def config_data(manifests: dict[str, list[dict]]) -> dict[str, str]:
    return find(manifests, "ConfigMap", deploy.CONFIG)["data"]


def pin(requirements: list[str], name: str) -> str:
    (found,) = [r.split("==")[1] for r in requirements if r.split("==")[0] == name]
    return found


def lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().split()
    return {l.split("==")[0].lower().replace("_", "-"): l.split("==")[1] for l in lines}


# --- the manifests -------------------------------------------------------------------------

def test_every_yaml_file_in_deploy_parses():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert VALUES in files and len(files) >= 5
    for path in files:
        assert documents(path.read_text()), f"{path} holds no YAML document"


def test_committed_manifests_are_the_rendered_defaults():
    """deploy/k8s/ is what the renderer writes; nothing there is edited by hand."""
    rendered = deploy.render()
    assert sorted(rendered) == sorted(deploy.FILES) == sorted(committed())
    for name, docs in rendered.items():
        assert (DEPLOY / "k8s" / name).read_text() == deploy.dump(docs), (
            f"deploy/k8s/{name} differs from the render: run `python -m medlake.deploy`")


VARIANTS = {"committed": None,
            "tp4": {"overrides": {"MEDLAKE_VLLM_TENSOR_PARALLEL": "4",
                                  "MEDLAKE_LLM_MODEL": "/models/Llama-3.3-70B-Instruct",
                                  "MEDLAKE_VLLM_PORT": "9000"},
                    "namespace": "clinical-ai", "storage_class": "efs-sc"}}


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_manifest_is_valid_kubernetes(variant, k8s_version):
    options = VARIANTS[variant]
    manifests = committed() if options is None else deploy.render(**options)
    kinds = []
    for docs in manifests.values():
        for doc in docs:
            kv.validate(doc, k8s_version, strict=True)
            kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Deployment", "PersistentVolumeClaim",
                             "PersistentVolumeClaim", "Service", "Service"]


def test_strict_validation_rejects_a_misspelt_field():
    """The schema check above is not vacuous: a typo in a probe's name fails it."""
    vllm_deployment = find(committed(), "Deployment", deploy.VLLM)
    container(vllm_deployment)["readinesProbe"] = container(vllm_deployment).pop("readinessProbe")
    with pytest.raises(kv.ValidationError, match="readinesProbe"):
        kv.validate(vllm_deployment, K8S_VERSIONS[0], strict=True)


def test_nothing_secret_is_rendered():
    for overrides in (None, VARIANTS["tp4"]["overrides"]):
        manifests = deploy.render(overrides)
        assert not [d for docs in manifests.values() for d in docs if d["kind"] == "Secret"]
        assert not set(config_data(manifests)) & deploy.SECRET_SETTINGS
    assert deploy.SECRET_SETTINGS <= set(ENV_VARS)


@pytest.mark.parametrize("overrides, message", [
    ({"MEDLAKE_PSEUDONYM_KEY": "k"}, "is a secret"),
    ({"MEDLAKE_API_TOKENS": "a:b"}, "is a secret"),
    ({"MEDLAKE_VLLM_TENSOR_PARALEL": "2"}, "not a medlake setting"),
    ({"MEDLAKE_LLM_BASE_URL": "http://elsewhere/v1"}, "set by the deployment"),
    ({"MEDLAKE_HOME": "data/medlake"}, "absolute path"),
    ({"MEDLAKE_VLLM_GPU_MEMORY": "1.5"}, "fraction of GPU memory"),
    ({"MEDLAKE_LLM_MODEL": ""}, "MEDLAKE_LLM_MODEL is not set"),
])
def test_renderer_refuses_what_would_deploy_wrongly(overrides, message):
    with pytest.raises(deploy.DeployError, match=message):
        deploy.render(overrides)


def test_cli_writes_the_manifests_and_reports_mistakes(tmp_path, capsys):
    out = tmp_path / "k8s"
    run = subprocess.run([sys.executable, "-m", "medlake.deploy", "--out", str(out),
                          "--set", "MEDLAKE_VLLM_TENSOR_PARALLEL=2", "--image", "reg.local/ml:7"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(deploy.FILES)
    written = {p.name: documents(p.read_text()) for p in out.iterdir()}
    assert container(find(written, "Deployment", deploy.VLLM))["resources"]["limits"] == {
        "nvidia.com/gpu": 2}
    assert container(find(written, "Deployment", deploy.RAG_API))["image"] == "reg.local/ml:7"

    assert deploy.main(["--out", str(tmp_path / "no"), "--set", "MEDLAKE_LLM_API_KEY=x"]) == 2
    assert "Secret medlake-secrets" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


# --- vLLM --------------------------------------------------------------------------------

def launcher_command(monkeypatch, capsys, env: dict[str, str]) -> list[str]:
    """What `medlake serve-llm --dry-run` prints in a pod whose environment is `env`."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    capsys.readouterr()
    assert medlake_cli(["serve-llm", "--dry-run"]) == 0
    return shlex.split(capsys.readouterr().out)


@pytest.mark.parametrize("overrides", [
    {},
    {"MEDLAKE_VLLM_TENSOR_PARALLEL": "4", "MEDLAKE_VLLM_GPU_MEMORY": "0.85",
     "MEDLAKE_VLLM_MAX_MODEL_LEN": "32768", "MEDLAKE_LLM_MODEL": "/models/Llama-3.3-70B-Instruct",
     "MEDLAKE_VLLM_PORT": "9000"},
])
def test_vllm_runs_the_launchers_command_on_as_many_gpus(overrides, monkeypatch, capsys):
    manifests = deploy.render(overrides)
    c = container(find(manifests, "Deployment", deploy.VLLM))
    expected = launcher_command(monkeypatch, capsys, config_data(manifests))
    assert expected[1] == "serve"
    assert c["command"] + c["args"] == ["vllm", *expected[1:]]
    flags = dict(zip(c["args"][2::2], c["args"][3::2]))
    gpus = int(overrides.get("MEDLAKE_VLLM_TENSOR_PARALLEL", "1"))
    assert flags["--tensor-parallel-size"] == str(gpus)
    assert c["resources"]["requests"]["nvidia.com/gpu"] == gpus
    assert c["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert c["ports"] == [{"name": "http", "containerPort": int(flags["--port"])}]


def test_vllm_pod_has_probes_shared_memory_the_api_key_and_the_pinned_release():
    d = find(committed(), "Deployment", deploy.VLLM)
    c, spec = container(d), pod_spec(d)
    port_names = {p["name"] for p in c["ports"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
        assert c[probe]["httpGet"]["port"] in port_names
    volumes = {v["name"]: v for v in spec["volumes"]}
    (shm,) = [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"
    env = {e["name"]: e for e in c["env"]}
    assert env["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": deploy.SECRET, "key": "MEDLAKE_LLM_API_KEY", "optional": True}
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    gpu_pin = pin(PYPROJECT["project"]["optional-dependencies"]["gpu"], "vllm")
    assert c["image"] == f"vllm/vllm-openai:v{gpu_pin}"


def test_llm_base_url_reaches_the_vllm_service_and_its_model():
    manifests = committed()
    data = config_data(manifests)
    url = urlparse(data["MEDLAKE_LLM_BASE_URL"])
    service_name, namespace, svc = url.hostname.split(".")
    assert (url.scheme, svc, url.path) == ("http", "svc", "/v1")
    service = find(manifests, "Service", service_name)
    assert service["metadata"]["namespace"] == namespace
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == url.port]
    # The Service selects the vLLM pods, and its target port is the container's port.
    selected = [d for docs in manifests.values() for d in docs if d["kind"] == "Deployment"
                and service["spec"]["selector"].items()
                <= d["spec"]["template"]["metadata"]["labels"].items()]
    assert [d["metadata"]["name"] for d in selected] == [deploy.VLLM]
    c = container(selected[0])
    assert port["targetPort"] in {p["name"] for p in c["ports"]}
    args = c["args"]
    assert args[args.index("--served-model-name") + 1] == data["MEDLAKE_LLM_MODEL"]
    # Both clients of the model read this ConfigMap.
    assert {"name": deploy.CONFIG} in user_deployment()["envConfigMaps"]
    rag = container(find(manifests, "Deployment", deploy.RAG_API))
    assert {"configMapRef": {"name": deploy.CONFIG}} in rag["envFrom"]


# --- the RAG service ---------------------------------------------------------------------

def test_rag_api_runs_medlake_serve_with_the_code_locations_image_and_lake():
    manifests = committed()
    d = find(manifests, "Deployment", deploy.RAG_API)
    c = container(d)
    helm_image = user_deployment()["image"]
    assert c["image"] == f"{helm_image['repository']}:{helm_image['tag']}"
    assert c["command"][:2] == ["medlake", "serve"]
    flags = dict(zip(c["command"][2::2], c["command"][3::2]))
    assert flags["--host"] == "0.0.0.0"
    assert int(flags["--port"]) == c["ports"][0]["containerPort"]
    run = subprocess.run([sys.executable, "-m", "medlake.cli", "serve", "--help"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and "--host" in run.stdout and "--port" in run.stdout
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"secretRef": {"name": deploy.SECRET}} in c["envFrom"]
    service = find(manifests, "Service", deploy.RAG_API)
    assert service["spec"]["ports"][0]["targetPort"] == c["ports"][0]["name"]


def test_everything_that_writes_the_lake_mounts_the_shared_volume_at_medlake_home():
    manifests = committed()
    home = config_data(manifests)["MEDLAKE_HOME"]
    claim = find(manifests, "PersistentVolumeClaim", deploy.HOME_CLAIM)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]

    def mounted(volumes: list[dict], mounts: list[dict]) -> set[str]:
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in volumes
                  if "persistentVolumeClaim" in v}
        return {m["mountPath"] for m in mounts if claims.get(m["name"]) == deploy.HOME_CLAIM}

    ud = user_deployment()
    assert mounted(ud["volumes"], ud["volumeMounts"]) == {home}
    rag = find(manifests, "Deployment", deploy.RAG_API)
    assert mounted(pod_spec(rag)["volumes"], container(rag)["volumeMounts"]) == {home}
    assert {"name": deploy.SECRET} in ud["envSecrets"]


# --- the Helm values ---------------------------------------------------------------------

def unknown_keys(node, path: str = "") -> list[str]:
    found = []
    if isinstance(node, dict):
        allowed = CHART_KEYS.get(path)
        if allowed is not None:
            found += [f"{path}.{k}".lstrip(".") for k in node if k not in allowed]
        for key, value in node.items():
            found += unknown_keys(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for item in node:
            found += unknown_keys(item, f"{path}[]")
    return found


def test_helm_values_use_only_the_charts_keys():
    v = values()
    assert unknown_keys(v) == []
    assert unknown_keys({"runLauncher": {"typo": 1}}) == ["runLauncher.typo"]  # not vacuous
    for dotted, allowed in CHART_ENUMS.items():
        node = v
        for part in dotted.split("."):
            node = node[part]
        assert node in allowed, f"{dotted}: {node!r} is not one of {sorted(allowed)}"


def test_helm_values_launch_runs_on_kubernetes_with_postgres_and_the_daemon():
    v = values()
    assert v["runLauncher"]["type"] == "K8sRunLauncher"
    assert "k8sRunLauncher" in v["runLauncher"]["config"]
    assert v["postgresql"]["enabled"] is True
    assert v["dagsterDaemon"]["enabled"] is True
    assert v["dagsterDaemon"]["runCoordinator"] == {"enabled": True,
                                                    "type": "QueuedRunCoordinator"}
    assert v["dagster-user-deployments"]["enabled"] is True
    # The chart's image for every Dagster service is the chart's release: the Python one.
    header = VALUES.read_text().split("\n\n")[0]
    assert f"--version {dg.__version__}" in header


def test_helm_fragments_are_valid_kubernetes():
    """The chart copies these into pod specs as they are: validate them in one."""
    ud = user_deployment()
    launcher = values()["runLauncher"]["config"]["k8sRunLauncher"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
           "spec": {"securityContext": ud["podSecurityContext"],
                    "volumes": ud["volumes"],
                    "containers": [{"name": "code", "image": "x",
                                    "volumeMounts": ud["volumeMounts"],
                                    "envFrom": [{"configMapRef": r} for r in ud["envConfigMaps"]]
                                    + [{"secretRef": r} for r in ud["envSecrets"]],
                                    "resources": launcher["resources"]}]}}
    for k8s_version in K8S_VERSIONS:
        kv.validate(pod, k8s_version, strict=True)


def test_user_deployment_serves_the_code_location_that_exists(home):
    ud = user_deployment()
    tool = PYPROJECT["tool"]["dagster"]
    (workspace,) = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    assert ud["name"] == tool["code_location_name"] == workspace["python_module"]["location_name"]
    args = ud["codeServerArgs"]
    assert "dagsterApiGrpcArgs" not in ud  # the chart takes one or the other
    module = args[args.index("-m") + 1]
    assert module == tool["module_name"] == workspace["python_module"]["module_name"]
    assert isinstance(importlib.import_module(module).defs, dg.Definitions)


def test_instance_limits_match_medlakes_own_dagster_yaml():
    own = yaml.safe_load(DAGSTER_YAML)
    v = values()
    assert v["concurrency"]["enabled"] is True
    assert v["concurrency"]["pools"] == {"defaultLimit": own["concurrency"]["pools"]["default_limit"],
                                         "granularity": own["concurrency"]["pools"]["granularity"]}
    retries = own["run_retries"]
    assert v["dagsterDaemon"]["runRetries"] == {
        "enabled": retries["enabled"], "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"]}
    assert v["telemetry"]["enabled"] is own["telemetry"]["enabled"]


# --- the image ---------------------------------------------------------------------------

def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = "\n".join(l for l in DOCKERFILE.read_text().splitlines()
                     if not l.lstrip().startswith("#"))
    text = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
            for line in text.splitlines() if line.strip()]


def stages() -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(instruction)
    return out


def test_image_builds_the_decoder_in_a_build_stage_and_runs_slim_as_non_root():
    build, runtime = stages()
    (base,) = [a.split("=", 1)[1] for i, a in instructions() if i == "ARG"
               and a.startswith("PYTHON_IMAGE=")]
    assert runtime[0] == ("FROM", "${PYTHON_IMAGE}") and "slim" in base
    assert re.search(r"apt-get install .*\bgcc\b", " ".join(a for i, a in build if i == "RUN"))
    assert not re.search(r"\bgcc\b", " ".join(a for i, a in runtime if i == "RUN"))
    run = " ".join(a for i, a in build if i == "RUN")
    assert "-c requirements.lock" in run and "-e '.[k8s]'" in run
    assert "import assets.genomics._calls" in run  # fails the build if gcc did not build it
    assert "dbt parse" in run
    (user,) = [a for i, a in runtime if i == "USER"]
    uid = user.split(":")[0]
    assert uid not in ("0", "root") and int(uid) == deploy.UID
    assert user_deployment()["podSecurityContext"]["runAsUser"] == deploy.UID
    assert PYPROJECT["project"]["optional-dependencies"]["k8s"]


def test_image_serves_the_code_location_module_on_the_charts_port():
    _, runtime = stages()
    (cmd,) = [json.loads(a) for i, a in runtime if i == "CMD"]
    assert not [a for i, a in runtime if i == "ENTRYPOINT"]  # the chart passes args only
    assert cmd[:3] == ["dagster", "code-server", "start"]
    flags = dict(zip(cmd[3::2], cmd[4::2]))
    module = flags["--module-name"]
    assert module == PYPROJECT["tool"]["dagster"]["module_name"]
    assert importlib.util.find_spec(module) is not None
    args = user_deployment()["codeServerArgs"]
    assert args[args.index("-m") + 1] == module
    (exposed,) = [a for i, a in runtime if i == "EXPOSE"]
    assert int(flags["--port"]) == int(exposed) == user_deployment()["port"]


def test_image_copies_only_existing_unignored_sources_and_bakes_in_no_secret():
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    assert {".venv", ".medlake", ".git"} <= set(ignored)
    build, runtime = stages()
    sources = [s for i, a in build if i == "COPY" for s in a.split()[:-1]]
    assert "requirements.lock" in sources and "dbt_project" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not [p for p in ignored if fnmatch(source, p) or source.startswith(p + "/")], source
    for i, a in build + runtime:
        if i in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", a) or [a.split("=")[0]]
            assert not [n for n in names if re.search("KEY|TOKEN|SECRET|PASSWORD", n)], a


# --- names and pins ----------------------------------------------------------------------

def test_every_medlake_setting_named_in_deploy_exists():
    """A misspelt MEDLAKE_* name would be silently ignored by the pods."""
    files = [*DEPLOY.rglob("*"), ROOT / "medlake" / "deploy.py"]
    names = {n for f in files if f.is_file() for n in re.findall(r"MEDLAKE_[A-Z0-9_]+",
                                                                  f.read_text())}
    assert {"MEDLAKE_HOME", "MEDLAKE_LLM_BASE_URL", "MEDLAKE_LLM_API_KEY"} <= names
    assert names - set(ENV_VARS) == set()


def test_pins_are_in_the_lock_and_installed():
    extras = PYPROJECT["project"]["optional-dependencies"]
    locked = lock()
    validate_pin = pin(extras["dev"], "kubernetes-validate")
    assert locked["kubernetes-validate"] == validate_pin == version("kubernetes-validate")
    assert locked["importlib-resources"] == version("importlib_resources")
    integration = pin(PYPROJECT["project"]["dependencies"], "dagster-dbt")  # Dagster's 0.x line
    for name in ("dagster-k8s", "dagster-postgres"):
        assert pin(extras["k8s"], name) == locked[name] == integration
