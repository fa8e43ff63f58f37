"""How much of the OMOP gold layer maps to standard concepts.

No OMOP vocabulary can be downloaded here, so codes map through the small seed
`dbt_project/seeds/concept_map.csv`; anything else gets concept_id 0. These checks say,
per gold table, which share of rows is unmapped and which source codes are most common
among them, so a data steward knows which rows of the seed to add next.
"""
import dagster as dg

from medlake import lake

# gold table -> (its main concept column, the source value beside it)
CONCEPT_COLUMNS = {
    "gold.person": ("gender_concept_id", "gender_source_value"),
    "gold.visit_occurrence": ("visit_concept_id", "visit_source_value"),
    "gold.condition_occurrence": ("condition_concept_id", "condition_source_value"),
    "gold.drug_exposure": ("drug_concept_id", "drug_source_value"),
    "gold.measurement": ("measurement_concept_id", "measurement_source_value"),
    "gold.observation": ("observation_concept_id", "observation_source_value"),
    "gold.procedure_occurrence": ("procedure_concept_id", "procedure_source_value"),
    "gold.note": ("note_class_concept_id", "note_source_value"),
}
# Above this share the check fails (as a warning: unmapped rows are still usable).
MAX_UNMAPPED = 0.2


def unmapped(table: str) -> dict:
    """Rows, unmapped rows (concept_id 0), their share, and the top unmapped source codes."""
    concept, source = CONCEPT_COLUMNS[table]
    rows, missing = lake.read(
        table, f"SELECT count(*), count(*) FILTER (WHERE {concept} = 0) FROM t").to_pylist()[0].values()
    top = lake.read(table, f"SELECT {source} AS code, count(*) AS n FROM t WHERE {concept} = 0 "
                           "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5").to_pylist()
    return {"rows": rows, "unmapped": missing, "share": missing / rows if rows else 0.0,
            "top_unmapped": [f"{r['code']} ({r['n']})" for r in top]}


def unmapped_check(table: str) -> dg.AssetChecksDefinition:
    layer, name = table.split(".")
    concept = CONCEPT_COLUMNS[table][0]

    @dg.asset_check(asset=dg.AssetKey([layer, name]), name="unmapped_concepts", blocking=False,
                    description=f"Share of {table} rows whose {concept} is 0 (the source code "
                    "is not in dbt_project/seeds/concept_map.csv). Warns above "
                    f"{MAX_UNMAPPED:.0%}; the rows stay usable through their source values.")
    def _check() -> dg.AssetCheckResult:
        r = unmapped(table)
        return dg.AssetCheckResult(
            passed=r["share"] <= MAX_UNMAPPED, severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows": r["rows"], "unmapped_rows": r["unmapped"],
                      "unmapped_share": dg.MetadataValue.float(round(r["share"], 4)),
                      "top_unmapped_source_values": ", ".join(r["top_unmapped"]) or "none"})

    _check.__name__ = f"unmapped_{layer}_{name}"
    return _check


omop_checks = [unmapped_check(table) for table in CONCEPT_COLUMNS]
