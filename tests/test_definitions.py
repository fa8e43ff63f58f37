import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

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


LAYERS = {"bronze", "silver", "gold", "vocab", "vectors"}
WRITER_POOLS = {"bronze": "lake_bronze", "silver": "lake_silver_gold", "gold": "lake_silver_gold",
                "vocab": "lake_silver_gold", "vectors": "lake_vectors"}


def test_every_asset_is_described_owned_grouped_tagged_and_linked_to_code(home):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        assert node.group_name and node.group_name != "default", key
        assert node.owners, key
        assert node.description and len(node.description) > 40, key
        assert node.kinds & {"delta", "lancedb"}, key  # what the table is stored in
        assert node.kinds & {"python", "dbt"}, key  # what computes it
        assert node.tags.get("layer") in LAYERS, key
        refs = node.metadata.get("dagster/code_references")
        assert refs and refs.code_references, key
        assert all(Path(r.file_path).is_file() for r in refs.code_references
                   if hasattr(r, "file_path")), key


def test_writers_hold_their_pool_retry_and_downstream_follows_upstream(home):
    from orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_external:
            continue
        op = defs.get_assets_def(key).op
        layer = node.tags["layer"]
        if key == dg.AssetKey(["bronze", "quarantine"]):  # reads only; reports counts
            assert node.automation_condition is not None
            continue
        assert node.pools == {WRITER_POOLS[layer]}, key
        assert op.retry_policy and op.retry_policy.backoff == dg.Backoff.EXPONENTIAL, key
        if layer == "bronze":  # started by the landing sensors, one batch per partition
            assert node.partitions_def.name == "ingest_batches", key
            assert node.automation_condition is None, key
        else:
            assert node.automation_condition is not None, key
            assert node.partitions_def is None, key
    checks = {k.name for k in graph.asset_check_keys}
    assert "great_expectations" in checks
    assert any(name.startswith("unique_silver_patient") for name in checks)
    from quality.suites import SUITES

    from quality.checks import HOSTED

    checked = {k.asset_key.to_user_string().replace("/", ".") for k in graph.asset_check_keys}
    # Tables no asset writes (the ingest log, the RAG audit) are checked on a host asset.
    assert set(SUITES) - set(HOSTED) <= checked


def test_sensors_and_schedules_are_on_by_default(home):
    from orchestration.definitions import defs

    sensors = {s.name: s for s in defs.sensors}
    for name in ["fhir_landing_sensor", "dicom_landing_sensor", "vcf_landing_sensor",
                 "medlake_automation"]:
        assert sensors[name].default_status == dg.DefaultSensorStatus.RUNNING, name
    schedules = {s.name: s for s in defs.schedules}
    assert schedules["nightly_refresh"].job_name == "refresh_all"
    assert schedules["nightly_maintenance"].job_name == "lake_maintenance"
    assert all(s.default_status == dg.DefaultScheduleStatus.RUNNING for s in schedules.values())


def test_dagster_yaml_limits_every_pool_and_retries_crashed_runs(home):
    from medlake.pipeline import ensure_dagster_home

    config = ensure_dagster_home()
    with dg.DagsterInstance.from_config(str(config.parent)) as instance:
        assert instance.event_log_storage.supports_global_concurrency_limits
        pools = instance.get_concurrency_config().pool_config
        assert pools.default_pool_limit == 1 and pools.pool_granularity.value == "op"
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure


def test_materializations_carry_rows_version_schema_preview_and_docs(demo):
    with dg.DagsterInstance.get() as instance:
        def latest(*path):
            event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
            assert event is not None, path
            return event.asset_materialization.metadata

        for path in [("bronze", "fhir_resources"), ("silver", "patient"),
                     ("silver", "document"), ("gold", "patient_360")]:
            md = latest(*path)
            assert md["dagster/row_count"].value > 0, path
            assert md["delta_version"].value >= 0, path
            assert md["dagster/column_schema"].value.columns, path
            assert md["dagster/table_name"].value == ".".join(path)
        assert "preview" in latest("silver", "patient")
        assert "person_key" in latest("silver", "patient")["preview"].value
        # bronze holds identifiers: no preview may copy them into the event log
        assert "preview" not in latest("bronze", "fhir_resources")
        assert latest("silver", "document")["data_docs"].value.endswith("index.html")
        assert latest("vectors", "clinical_chunks")["dagster/row_count"].value > 0


def test_dagster_definitions_validate(home):
    (home / "dagster_home").mkdir(parents=True)  # as `medlake dev` / `make dev` do
    dagster = Path(sys.executable).with_name("dagster")
    out = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


@dataclass
class DagsterUI:
    url: str
    home: Path
    graphql: dict  # the first complete answer to QUERY


QUERY = ("{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {"
         " __typename ... on PythonError { message } } } } } assetNodes { assetKey { path }"
         " groupName } }")


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory) -> Iterator[DagsterUI]:
    """What a data engineer does first: `dagster dev` on a free localhost port, with
    medlake's dagster.yaml; started once for the tests that look at the UI. PATH
    deliberately lacks the virtualenv, as when dagster is started by its full path."""
    from medlake.pipeline import DAGSTER_YAML

    home = tmp_path_factory.mktemp("ui") / "medlake"
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(DAGSTER_YAML)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PATH": "/usr/bin:/bin", "MEDLAKE_HOME": str(home),
           "MEDLAKE_LAKE_URI": str(home / "lake"), "DAGSTER_HOME": str(home / "dagster_home")}
    env.pop("MEDLAKE_LLM_BASE_URL", None)
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                             "-p", str(port)], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    query = json.dumps({"query": QUERY}).encode()
    try:
        deadline, data = time.time() + 240, None
        while time.time() < deadline and proc.poll() is None:
            time.sleep(2)
            try:
                req = urllib.request.Request(f"{url}/graphql", data=query,
                                             headers={"Content-Type": "application/json"})
                data = json.loads(urllib.request.urlopen(req, timeout=10).read())["data"]
            except OSError:
                continue
            if data["workspaceOrError"]["locationEntries"][0]["locationOrLoadError"]:
                break
        assert data is not None, f"dagster dev did not answer (exit code {proc.poll()})"
        yield DagsterUI(url, home, data)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_dagster_dev_serves_the_asset_graph(dagster_ui):
    entry = dagster_ui.graphql["workspaceOrError"]["locationEntries"][0]
    assert entry["locationOrLoadError"]["__typename"] == "RepositoryLocation", entry
    keys = {"/".join(n["assetKey"]["path"]) for n in dagster_ui.graphql["assetNodes"]}
    assert {"bronze/fhir_resources", "silver/patient", "gold/patient_360",
            "vectors/clinical_chunks"} <= keys


ERROR_TEXT = ["PythonError", "Error loading", "Something went wrong", "Unexpected error",
              "DagsterInvalidDefinitionError", "Traceback", "failed to load"]


def _open(pg, url: str) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    pg.goto(url, wait_until="networkidle", timeout=120_000)
    try:  # the community dialog, shown once per browser profile, a moment after load
        pg.get_by_role("button", name="Skip").click(timeout=4000)
    except PlaywrightTimeout:
        pass
    pg.wait_for_timeout(1500)  # the graph lays itself out after the data arrives
    return pg.inner_text("body")


def test_asset_graph_renders_in_a_browser(dagster_ui):
    """Headless Chromium opens the lineage, a group, and the automation page: the groups
    and key assets are drawn, no error banner; screenshots go to build/screenshots/."""
    from browser import page, screenshot

    groups = {n["groupName"] for n in dagster_ui.graphql["assetNodes"]}
    with page() as pg:
        lineage = _open(pg, f"{dagster_ui.url}/asset-groups")
        assert "Global asset lineage" in lineage
        for group in groups:
            assert pg.get_by_text(group, exact=True).count() >= 1, group
        assert screenshot(pg, "asset-lineage").stat().st_size > 20_000

        ehr = _open(pg, f"{dagster_ui.url}/locations/medlake/asset-groups/ehr")
        for name in ["fhir_resources", "patient", "observation", "imaging_study",
                     "clinical_chunks"]:
            assert name in ehr, name
        assert "delta" in ehr and "dbt" in ehr  # kinds are drawn under the nodes
        screenshot(pg, "asset-group-ehr")

        automation = _open(pg, f"{dagster_ui.url}/automation")
        for name in ["fhir_landing_sensor", "dicom_landing_sensor", "vcf_landing_sensor",
                     "medlake_automation", "nightly_refresh", "nightly_maintenance"]:
            assert name in automation, name
        screenshot(pg, "automation")

        for text in (lineage, ehr, automation):
            assert not [e for e in ERROR_TEXT if e in text], text[:2000]
