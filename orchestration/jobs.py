"""Jobs and schedules: the full refresh, and the nightly lake maintenance."""
import dagster as dg

from assets.retrieval.vectors import open_table
from medlake import maintenance
from medlake.config import get_settings
from orchestration.policies import POOL_BRONZE, POOL_DBT, POOL_VECTORS, TRANSIENT_RETRY

refresh_all = dg.define_asset_job(
    "refresh_all", selection=dg.AssetSelection.all(),
    description="Landing → bronze → silver → gold → checks → embeddings; safe to re-run.")


def _report(context: dg.OpExecutionContext, results: list[dict]) -> None:
    for r in results:
        if r.get("exists"):
            context.log.info(
                f"{r['table']}: v{r['version_before']} → v{r['version_after']}, "
                f"{r['files_compacted']} files compacted into {r['files_written']}, "
                f"{r['files_vacuumed']} vacuumed")


def _maintain_delta_op(name: str, layers: list[str], pool: str) -> dg.OpDefinition:
    @dg.op(name=name, pool=pool, retry_policy=TRANSIENT_RETRY,
           description=f"optimize.compact() and vacuum (keeping MEDLAKE_VACUUM_RETENTION_DAYS "
                       f"of history) on every Delta table in {', '.join(layers)}.")
    def _op(context: dg.OpExecutionContext) -> None:
        _report(context, maintenance.maintain_layers(layers, get_settings().vacuum_retention_days))

    return _op


maintain_bronze = _maintain_delta_op("maintain_bronze", ["bronze"], POOL_BRONZE)
maintain_silver_gold = _maintain_delta_op("maintain_silver_gold", ["silver", "gold"], POOL_DBT)


@dg.op(pool=POOL_VECTORS, retry_policy=TRANSIENT_RETRY,
       description="LanceDB optimize: compact fragments, drop versions past the retention.")
def maintain_vectors(context: dg.OpExecutionContext) -> None:
    r = maintenance.maintain_vectors(open_table(), get_settings().vacuum_retention_days)
    context.log.info(f"vectors: {r}")


@dg.job(description="Nightly lake maintenance: Delta compaction and vacuum per layer, "
                    "LanceDB optimize. Each step holds its layer's pool, so it never "
                    "overlaps a run writing the same tables.")
def lake_maintenance():
    maintain_bronze()
    maintain_silver_gold()
    maintain_vectors()


# Refresh first, then maintain what the refresh wrote; both at night, UTC.
nightly_refresh = dg.ScheduleDefinition(
    name="nightly_refresh", job=refresh_all, cron_schedule="0 2 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Full refresh of every asset (anything the sensors missed), 02:00 UTC.",
    tags={"dagster/max_retries": "2"})
nightly_maintenance = dg.ScheduleDefinition(
    name="nightly_maintenance", job=lake_maintenance, cron_schedule="30 3 * * *",
    execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Delta optimize.compact() + vacuum and LanceDB optimize, 03:30 UTC.")
