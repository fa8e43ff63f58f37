"""dbt models (silver and gold) as Dagster assets; dbt tests become asset checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, dbt_assets

from assets.bronze import table_metadata
from medlake.config import get_settings
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


@dbt_assets(
    manifest=ensure_manifest(),
    project=dbt_project,
    dagster_dbt_translator=MedlakeTranslator(
        settings=DagsterDbtTranslatorSettings(enable_code_references=True)),
)
def lake_models(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """Silver (de-identified) and gold (marts) tables built by dbt and committed to Delta
    by the medlake dbt plugin; a model whose content did not change keeps its version."""
    # dbt's per-run artifacts (run_results, logs) live with the data, not in the checkout.
    target = get_settings().home / "dbt_runs" / context.run_id
    for event in dbt.cli(["build"], context=context, target_path=target).stream():
        if isinstance(event, (dg.Output, dg.AssetMaterialization)):
            key = event.asset_key if isinstance(event, dg.AssetMaterialization) else \
                context.asset_key_for_output(event.output_name)
            # Record the Delta version dbt's plugin committed, for time travel from the UI.
            extra = table_metadata(".".join(key.path))
            event = event.with_metadata({**(event.metadata or {}), **extra})
        yield event
