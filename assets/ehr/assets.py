import json
from pathlib import Path

import dagster as dg

from assets.bronze import bronze_assets
from assets.ehr.fhir import FHIR

fhir_assets = bronze_assets(FHIR, folder="fhir", group="ehr")

VIEWS = Path(__file__).resolve().parents[2] / "dbt_project" / "views"


def sof_view_specs() -> list[dg.AssetSpec]:
    """The SQL-on-FHIR views (`sof.<name>`, the dbt source `sof`) as assets of their own
    in the graph: DuckDB views compiled from `dbt_project/views/<name>.json` over
    bronze.fhir_resources whenever dbt connects. They hold no data, so nothing
    materializes them; they show which ViewDefinition each silver table reads."""
    specs = []
    for path in sorted(VIEWS.glob("*.json")):
        view = json.loads(path.read_text())
        specs.append(dg.AssetSpec(
            ["sof", path.stem], group_name="ehr", deps=[["bronze", "fhir_resources"]],
            kinds={"duckdb", "fhir"}, owners=["team:analytics-engineering"],
            tags={"layer": "silver", "domain": "ehr"},
            description=f"SQL-on-FHIR v2 view over {view.get('resource')} resources, compiled "
                        f"from dbt_project/views/{path.name} into a DuckDB view when dbt "
                        "connects (no data of its own). " + (view.get("description") or "")))
    return specs
