"""dbt models (silver and gold) as Dagster assets; dbt tests become asset checks."""

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from assets.bronze import table_metadata
from assets.lineage import lineage_metadata
from medlake import lake
from medlake.config import get_settings
from orchestration.policies import POOL_DBT, TRANSIENT_RETRY, follows_upstream
from orchestration.resources import dbt_project, ensure_manifest

class MedlakeTranslator(DagsterDbtTranslator):
    """Keys are `<layer>/<table>`, matching the lake path and the bronze assets' keys.
    Groups come from each model's `meta.dagster.group` (set per folder in dbt_project.yml)."""

    def get_asset_key(self, props: Mapping[str, Any]) -> dg.AssetKey:
        if props["resource_type"] == "source":
            return dg.AssetKey([props["source_name"], props["name"]])
        return dg.AssetKey([props["schema"], props.get("alias") or props["name"]])

    def get_owners(self, props: Mapping[str, Any]):
        return ["team:analytics-engineering"]

    def get_tags(self, props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(props), "layer": props.get("schema", "")}

    def get_asset_spec(self, manifest, unique_id, project):
        # The dbt plugin commits every model to Delta: say so next to dbt and duckdb.
        return super().get_asset_spec(manifest, unique_id, project).merge_attributes(
            kinds={"delta"})

    def get_automation_condition(self, props: Mapping[str, Any]):
        return follows_upstream()


def compiled_sql(event, target) -> Path:
    """Where dbt wrote the compiled SQL of the model an event is about."""
    import json

    unique_id = event.metadata["unique_id"].value
    node = json.loads(dbt_project.manifest_path.read_text())["nodes"][unique_id]
    return Path(target) / "compiled" / node["package_name"] / node["original_file_path"]


def upstream_versions(keys) -> dict[str, int]:
    """`{"bronze.fhir_resources": 3, ...}` for the lake tables among `keys`."""
    out = {}
    for key in keys:
        table = ".".join(key.path)
        if len(key.path) == 2 and (v := lake.version(table)) is not None:
            out[table] = v
    return out


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=MedlakeTranslator(
        settings=DagsterDbtTranslatorSettings(enable_code_references=True)),
    pool=POOL_DBT,
    retry_policy=TRANSIENT_RETRY,
)
def lake_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Silver (de-identified) and gold (marts) tables built by dbt and committed to Delta
    by the medlake dbt plugin; a model whose content did not change keeps its version."""
    # dbt's per-run artifacts (run_results, logs) live with the data, not in the checkout.
    target = get_settings().home / "dbt_runs" / context.run_id
    stream = dbt.cli(["build"], context=context, target_path=target).stream()
    try:
        yield from _with_lake_metadata(context, target,
                                       stream.fetch_column_metadata(with_column_lineage=True))
    finally:
        release_warehouse()


def release_warehouse() -> None:
    """dagster-dbt reads column metadata through dbt-duckdb in this process, and dbt-duckdb
    keeps that DuckDB connection in a class attribute, holding the warehouse file's lock:
    the next dbt run (a subprocess, e.g. a second run in `medlake run`'s process) could
    not open it. Close it once the models are built."""
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        env.close()


def _with_lake_metadata(context: dg.AssetExecutionContext, target: Path, events):
    for event in events:
        if isinstance(event, (dg.Output, dg.AssetMaterialization)):
            key = event.asset_key if isinstance(event, dg.AssetMaterialization) else \
                context.asset_key_for_output(event.output_name)
            # Record the Delta version dbt's plugin committed, for time travel from the UI,
            # and the versions of the tables it read (dbt builds upstream models first).
            extra = table_metadata(".".join(key.path))
            upstream = upstream_versions(context.assets_def.asset_deps.get(key, []))
            if "dagster/column_lineage" not in (event.metadata or {}):
                # dagster-dbt traces none through an ephemeral parent; sqlglot can.
                extra.update(lineage_metadata(compiled_sql(event, target), list(upstream)))
            event = event.with_metadata({**(event.metadata or {}), **extra,
                                         "upstream_versions": upstream})
        yield event
