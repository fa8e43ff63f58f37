import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_code_location_loads_without_gx_or_torch(home):
    code = ("import sys; from orchestration.definitions import defs; "
            "keys = {k.to_user_string() for k in defs.resolve_all_asset_keys()}; "
            "print(sorted(keys)); "
            "assert 'great_expectations' not in sys.modules and 'torch' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    for key in ["bronze/fhir_resources", "bronze/dicom_instances", "bronze/vcf_genotypes",
                "bronze/quarantine", "silver/patient", "silver/document",
                "gold/patient_360", "vectors/clinical_chunks"]:
        assert key in out.stdout


def test_assets_have_groups_owners_and_descriptions(home):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        assert node.group_name and node.group_name != "default", key
        assert node.owners, key
        assert node.description, key
    checks = {k.name for k in graph.asset_check_keys}
    assert "great_expectations" in checks
    assert any(name.startswith("unique_silver_patient") for name in checks)


def test_dagster_definitions_validate(home):
    (home / "dagster_home").mkdir(parents=True)  # as `medlake dev` / `make dev` do
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dagster_dev_serves_the_asset_graph(home):
    """What a data engineer does first: `dagster dev`, then look at the assets. PATH
    deliberately lacks the virtualenv, as when dagster is started by its full path."""
    import json
    import os
    import signal
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (home / "dagster_home").mkdir(parents=True)
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                             "-p", str(port)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    query = json.dumps({"query": "{ workspaceOrError { ... on Workspace { locationEntries {"
                        " name locationOrLoadError { __typename ... on PythonError { message }"
                        " } } } } assetNodes { assetKey { path } groupName } }"}).encode()
    try:
        deadline, data = time.time() + 180, None
        while time.time() < deadline:
            time.sleep(2)
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                data = json.loads(urllib.request.urlopen(req, timeout=10).read())["data"]
            except OSError:
                continue
            entry = data["workspaceOrError"]["locationEntries"][0]
            if entry["locationOrLoadError"] is not None:
                break
        assert data is not None, "dagster dev did not answer"
        entry = data["workspaceOrError"]["locationEntries"][0]
        assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert {"bronze/fhir_resources", "silver/patient", "gold/patient_360",
                "vectors/clinical_chunks"} <= keys
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
