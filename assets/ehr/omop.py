"""How much of the OMOP gold layer maps to standard concepts.

No OMOP vocabulary can be downloaded here, so codes map through the small seed
`dbt_project/seeds/concept_map.csv`; anything else gets concept_id 0. These checks report,
per gold table, the share of rows that is unmapped and the commonest unmapped source
codes, so a data steward knows which rows of the seed to add or verify next. They warn
when a code appears that the seed does not list at all (a new source or code system);
codes the seed lists but could not verify (concept_id 0, verified=no) are a known gap.
"""
import csv
from functools import cache
from pathlib import Path

import dagster as dg

from medlake import lake

SEED = Path(__file__).resolve().parents[2] / "dbt_project" / "seeds" / "concept_map.csv"

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


@cache
def seed_codes(path: Path = SEED) -> frozenset[str]:
    with open(path, newline="") as f:
        return frozenset(row["concept_code"] for row in csv.DictReader(f))


def unmapped(table: str) -> dict:
    """Rows, unmapped rows (concept_id 0) and their share, the commonest unmapped source
    codes, and the unmapped codes the seed does not list at all."""
    concept, source = CONCEPT_COLUMNS[table]
    rows, missing = lake.read(
        table, f"SELECT count(*), count(*) FILTER (WHERE {concept} = 0) FROM t").to_pylist()[0].values()
    codes = lake.read(table, f"SELECT {source} AS code, count(*) AS n FROM t WHERE {concept} = 0 "
                             "GROUP BY 1 ORDER BY 2 DESC, 1").to_pylist()
    return {"rows": rows, "unmapped": missing, "share": missing / rows if rows else 0.0,
            "top_unmapped": [f"{r['code']} ({r['n']})" for r in codes[:5]],
            "unknown_codes": sorted(str(r["code"]) for r in codes if r["code"] not in seed_codes())}


def unmapped_check(table: str) -> dg.AssetChecksDefinition:
    layer, name = table.split(".")
    concept = CONCEPT_COLUMNS[table][0]

    @dg.asset_check(asset=dg.AssetKey([layer, name]), name="unmapped_concepts", blocking=False,
                    description=f"Share of {table} rows whose {concept} is 0 (source code "
                    "not mapped by dbt_project/seeds/concept_map.csv), with the commonest such "
                    "codes. Warns when a code is missing from the seed altogether; the rows "
                    "stay usable through their *_source_value columns.")
    def _check() -> dg.AssetCheckResult:
        r = unmapped(table)
        return dg.AssetCheckResult(
            passed=not r["unknown_codes"], severity=dg.AssetCheckSeverity.WARN,
            metadata={"rows": r["rows"], "unmapped_rows": r["unmapped"],
                      "unmapped_share": dg.MetadataValue.float(round(r["share"], 4)),
                      "top_unmapped_source_values": ", ".join(r["top_unmapped"]) or "none",
                      "codes_missing_from_seed": ", ".join(r["unknown_codes"][:20]) or "none"})

    _check.__name__ = f"unmapped_{layer}_{name}"
    return _check


omop_checks = [unmapped_check(table) for table in CONCEPT_COLUMNS]
