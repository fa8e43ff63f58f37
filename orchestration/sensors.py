"""Sensors: one per landing folder, starting an ingest run for each batch of new files,
and the automation sensor that keeps silver, gold and the embeddings up to date."""
import json
import time

import dagster as dg

from assets.bronze import INGEST_BATCHES
from medlake import landing
from medlake.config import get_settings
from medlake.ingest import Modality


def landing_sensor(modality: Modality, folder: str, assets: dg.AssetsDefinition,
                   interval_seconds: int = 30) -> dg.SensorDefinition:
    """Watch `landing/<folder>/`; each evaluation turns the new or changed files that have
    finished arriving into one ingest batch: a dynamic partition, a manifest, and a run of
    this modality's bronze assets tagged with the batch id.

    The cursor maps each file already sent to its (size, mtime). Dagster stores the cursor
    with the sensor's state, so a daemon restart neither loses nor repeats files."""

    @dg.sensor(name=f"{modality.name}_landing_sensor", target=assets,
               minimum_interval_seconds=interval_seconds,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Starts an ingest run for new or changed files in "
                           f"landing/{folder}/ once they stop changing "
                           "(MEDLAKE_LANDING_SETTLE_SECONDS).")
    def _sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        settings = get_settings()
        seen = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        # A folder, or the objects under an s3:// prefix (listed, not fetched).
        found = landing.scan(landing.location(folder), modality.patterns, seen, now,
                             settings.landing_settle_seconds)
        cursor = json.dumps(found.seen, sort_keys=True)
        if not found.ready:
            why = (f"{len(found.waiting)} file(s) still arriving" if found.waiting
                   else "no new files")
            return dg.SensorResult(skip_reason=why, cursor=cursor)
        batch = landing.batch_id(modality.name, found.ready, now)
        landing.write_manifest(landing.Manifest(batch, modality.name, folder, found.ready))
        context.log.info(f"batch {batch}: {len(found.ready)} files; "
                         f"{len(found.waiting)} still arriving")
        return dg.SensorResult(
            run_requests=[dg.RunRequest(
                run_key=batch, partition_key=batch,
                tags={"medlake/batch_id": batch, "medlake/modality": modality.name,
                      "medlake/files": str(len(found.ready))})],
            dynamic_partitions_requests=[INGEST_BATCHES.build_add_request([batch])],
            cursor=cursor,
        )

    return _sensor


# Evaluates every asset's AutomationCondition (silver, gold and embeddings follow their
# upstreams eagerly); on by default so landed files flow through without a click.
automation_sensor = dg.AutomationConditionSensorDefinition(
    "medlake_automation", target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=30,
    description="Materializes silver, gold and the embeddings when their upstreams change.")
