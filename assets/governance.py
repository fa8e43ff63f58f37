import dagster as dg

from assets.bronze import table_metadata
from medlake import lake
from medlake.ingest import INGEST_LOG, QUARANTINE, QUARANTINE_SCHEMA
from orchestration.policies import follows_upstream


@dg.asset(
    key=["bronze", "quarantine"], group_name="governance", kinds={"delta", "python"},
    owners=["team:data-platform"], tags={"layer": "bronze", "domain": "governance"},
    automation_condition=follows_upstream(),
    deps=[["bronze", "fhir_resources"], ["bronze", "dicom_instances"],
          ["bronze", "vcf_variants"]],
)
def quarantine() -> dg.MaterializeResult:
    """Bad input from every modality, one row per bad file, line or entry, with one
    sentence saying what is wrong and what to do. Written by the ingestion assets; this
    asset reports what is in it so the UI shows quarantine counts per modality."""
    lake.ensure(QUARANTINE, QUARANTINE_SCHEMA)
    by_modality = lake.read(QUARANTINE, "SELECT modality, count(*) AS n FROM t GROUP BY 1")
    counts = dict(zip(by_modality.column(0).to_pylist(), by_modality.column(1).to_pylist())) \
        if by_modality.num_rows else {}
    files = lake.read(INGEST_LOG, "SELECT count(*) FROM t").column(0)[0].as_py()
    return dg.MaterializeResult(metadata={
        **table_metadata(QUARANTINE),
        **{f"quarantined {m}": n for m, n in sorted(counts.items())},
        "files in ingest log": files,
    })
