"""The medlake Dagster code location: `dagster dev` loads it through workspace.yaml."""
import dagster as dg

from assets import governance, transform
from assets.ehr import assets as ehr
from assets.generation import assets as generation
from assets.genomics import assets as genomics
from assets.imaging import assets as imaging
from assets.retrieval import assets as retrieval
from medlake.progress import progress_logger
from orchestration.resources import resources
from quality.checks import gx_checks

refresh_all = dg.define_asset_job(
    "refresh_all", selection=dg.AssetSelection.all(),
    description="Landing → bronze → silver → gold → checks → embeddings; safe to re-run.")

defs = dg.Definitions(
    assets=[ehr.fhir_assets, imaging.dicom_assets, genomics.vcf_assets,
            governance.quarantine, transform.lake_models, retrieval.clinical_chunks,
            generation.rag_audit, generation.feedback, generation.patient_summary,
            generation.eval_dataset, generation.retrieval_eval],
    asset_checks=gx_checks,
    jobs=[refresh_all],
    resources=resources(),
    # Used only when a run's config names it (the CLI does); the UI keeps its defaults.
    loggers={"medlake_progress": progress_logger, "console": dg.colored_console_logger},
)
