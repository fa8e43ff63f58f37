"""`medlake run`: materialize every asset once, outside the UI, and summarize the lake."""
from __future__ import annotations

import contextlib

from dataclasses import dataclass, field
from pathlib import Path

from medlake import lake
from medlake.config import get_settings

JOB = "refresh_all"
LAKE_TABLES = ["bronze.fhir_resources", "bronze.dicom_instances", "bronze.vcf_variants",
               "bronze.vcf_genotypes", "bronze.vcf_samples", "bronze.quarantine",
               "silver.patient", "silver.document", "gold.patient_360",
               "bronze.vcf_annotations", "silver.variant", "silver.genotype",
               "gold.variant_occurrence", "silver.imaging_study", "gold.imaging_report"]


# The Dagster instance settings medlake needs (DAGSTER_HOME/dagster.yaml):
# - pools: every writing step names the pool of the tables it writes
#   (orchestration/policies.py); one step per pool at a time, so two runs never write the
#   same table at once, except bronze's pool, which `ensure_dagster_home` gives
#   MEDLAKE_BRONZE_WRITERS slots (bronze writers then MERGE and retry conflicts).
#   `dagster instance concurrency` and the UI show the slots.
# - run retries: a run whose worker crashed is retried; step failures are retried inside
#   the run by each asset's RetryPolicy (with backoff), so they are not retried twice.
DAGSTER_YAML = """\
telemetry:
  enabled: false
concurrency:
  pools:
    default_limit: 1
    granularity: op
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false
"""


def ensure_dagster_home() -> Path:
    """Create DAGSTER_HOME with medlake's dagster.yaml unless one is already there (a
    deployment's own file wins), and give the bronze pool its limit."""
    home = get_settings().dagster_home
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML)
    set_bronze_pool_limit(home)
    return config


def set_bronze_pool_limit(home: Path) -> None:
    """Give the lake_bronze pool MEDLAKE_BRONZE_WRITERS slots in the Dagster instance at
    `home` (kept in its database, not in dagster.yaml, whose pools share one default
    limit), so changing the setting is all it takes, in either direction. The ingests
    follow the same setting (medlake.ingest), so the pool never lets in more writers
    than the ingests were told to expect."""
    import dagster as dg

    from orchestration.policies import POOL_BRONZE

    writers = get_settings().bronze_writers
    with dg.DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        if not storage.supports_global_concurrency_limits:
            return
        if {p.name: p.limit for p in storage.get_pool_limits()}.get(POOL_BRONZE) != writers:
            storage.set_concurrency_slots(POOL_BRONZE, writers)


@dataclass
class RunReport:
    success: bool
    run_id: str
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log_path: str = ""
    tables: dict[str, dict] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    chunks_change: int = 0


def run(show_progress: bool = True) -> RunReport:
    settings = get_settings()
    settings.export_env()
    ensure_dagster_home()
    settings.landing.mkdir(parents=True, exist_ok=True)
    import dagster as dg

    from medlake import progress
    from orchestration.definitions import defs

    before = summarize()
    job = defs.resolve_job_def(JOB)
    steps = len(job.graph.node_defs)
    loggers = ({"medlake_progress": {}} if show_progress
               else {"console": {"config": {"log_level": "ERROR"}}})
    log_path = settings.home / "logs" / "last_run.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # dbt's own output goes to a file; the terminal gets the progress bar and summary.
    with dg.DagsterInstance.get() as instance, open(log_path, "w") as log_file, \
            contextlib.redirect_stdout(log_file):  # runs show up in `dagster dev` too
        if show_progress:
            progress.start(steps)
        try:
            result = job.execute_in_process(instance=instance, raise_on_error=False,
                                            run_config={"loggers": loggers})
        finally:
            progress.close()
    failures = [f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
                for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    failed_checks = [e.event_specific_data for e in result.all_events
                     if e.event_type_value == "ASSET_CHECK_EVALUATION"
                     and not e.event_specific_data.passed]
    # A check of severity WARN reports (a stale feed, drifting counts); only ERROR fails.
    warnings = [f"check {c.asset_key.to_user_string()}:{c.check_name} warns"
                for c in failed_checks if c.severity == dg.AssetCheckSeverity.WARN]
    failures += [f"check {c.asset_key.to_user_string()}:{c.check_name} failed"
                 for c in failed_checks if c.severity != dg.AssetCheckSeverity.WARN]
    after = summarize()
    for table, stats in after["tables"].items():
        old = before["tables"].get(table, {"rows": 0})
        stats["change"] = stats["rows"] - old["rows"]
    after["chunks_change"] = after["chunks"] - before["chunks"]
    return RunReport(success=result.success and not failures, run_id=result.run_id,
                     failures=failures, warnings=warnings, log_path=str(log_path), **after)


def summarize() -> dict:
    tables = {}
    for t in LAKE_TABLES:
        s = lake.stats(t)
        if s.get("exists"):
            tables[t] = {"version": s["version"], "rows": s["rows"]}
    q = lake.read("bronze.quarantine", "SELECT modality, count(*) FROM t GROUP BY 1 ORDER BY 1")
    quarantined = dict(zip(q.column(0).to_pylist(), q.column(1).to_pylist())) if q.num_rows else {}
    from assets.retrieval.vectors import open_table

    tbl = open_table()
    return {"tables": tables, "quarantined": quarantined,
            "chunks": tbl.count_rows() if tbl is not None else 0}
