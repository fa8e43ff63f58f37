"""The medlake Dagster code location: `dagster dev` loads it through workspace.yaml."""
import warnings

import dagster as dg

from assets import governance, transform
from assets.ehr import assets as ehr
from assets.ehr.omop import omop_checks
from assets.generation import assets as generation
from assets.genomics import assets as genomics
from assets.imaging import assets as imaging
from assets.retrieval import assets as retrieval
from medlake.progress import progress_logger
from orchestration import jobs, sensors
from orchestration.jobs import refresh_all
from orchestration.resources import resources
from quality.checks import gx_checks_for, phi_guard


def _with_code_references(assets: list) -> list:
    with warnings.catch_warnings():  # the API is marked beta; the UI feature is stable
        warnings.simplefilter("ignore", dg.BetaWarning)
        return list(dg.with_source_code_references(assets))


lake_assets = [ehr.fhir_assets, imaging.dicom_assets, genomics.vcf_assets,
               governance.quarantine, transform.lake_models, retrieval.clinical_chunks]
# Downstream of the embeddings (and so of the PHI guard that runs after them).
generation_assets = [generation.patient_summary, generation.eval_dataset,
                     generation.retrieval_eval]
assets = _with_code_references([*lake_assets, *generation_assets])
asset_keys = [k for a in assets for k in a.keys]
# The guard waits for every silver and gold table the lake builds before the embeddings.
guarded = [k for a in lake_assets for k in a.keys if k.path[0] in ("silver", "gold")]

defs = dg.Definitions(
    # Code references: each asset links to the file and line that defines it.
    # gold.rag_audit and gold.feedback are written by the RAG service, and the sof views
    # are compiled when dbt connects: declared (external) for lineage only.
    assets=[*assets, generation.rag_audit, generation.feedback, *ehr.sof_view_specs()],
    asset_checks=[*gx_checks_for(asset_keys),
                  phi_guard(guarded),
                  genomics.samples_linked, *omop_checks, *imaging.imaging_checks],
    jobs=[refresh_all, jobs.lake_maintenance],
    schedules=[jobs.nightly_refresh, jobs.nightly_maintenance],
    sensors=[sensors.landing_sensor(ehr.FHIR, "fhir", ehr.fhir_assets),
             sensors.landing_sensor(imaging.DICOM, "dicom", imaging.dicom_assets),
             sensors.landing_sensor(genomics.VCF, "vcf", genomics.vcf_assets),
             sensors.automation_sensor],
    resources=resources(),
    # Used only when a run's config names it (the CLI does); the UI keeps its defaults.
    loggers={"medlake_progress": progress_logger, "console": dg.colored_console_logger},
)
