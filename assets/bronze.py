"""One factory for the landing → bronze assets, so every modality ingests, quarantines,
logs and reports metadata the same way."""
import dagster as dg

from medlake import lake
from medlake.config import get_settings
from medlake.ingest import Modality, ingest


def table_metadata(table: str) -> dict:
    """Delta version, row count and schema of a table, in Dagster's metadata keys."""
    s = lake.stats(table)
    if not s.get("exists"):
        return {}
    return {
        "dagster/row_count": dg.MetadataValue.int(s["rows"]),
        "dagster/column_schema": dg.TableSchema(columns=[
            dg.TableColumn(f.name, str(f.type)) for f in s["schema"]]),
        "dagster/uri": dg.MetadataValue.path(s["uri"]),
        "delta_version": dg.MetadataValue.int(s["version"]),
    }


def bronze_assets(modality: Modality, *, folder: str, group: str):
    """One multi-asset that ingests `landing/<folder>/` into all of the modality's bronze
    tables in a single pass over the files. Bad files and entries go to
    `bronze.quarantine`, every file to `bronze.ingest_log`."""
    specs = [dg.AssetSpec(key=spec.name.split("."), group_name=group,
                          description=spec.description, kinds={"delta", "python"},
                          owners=["team:data-platform"],
                          tags={"layer": "bronze", "domain": group})
             for spec in modality.tables]

    @dg.multi_asset(specs=specs, name=f"ingest_{modality.name}")
    def _assets(context: dg.AssetExecutionContext):
        root = get_settings().landing / folder
        if not root.exists():
            context.log.warning(f"{root} does not exist; nothing to ingest. Drop files there "
                                "or run `medlake generate`.")

        def progress(done: int, total: int) -> None:
            context.log.info(f"{modality.name}: {done}/{total} new files processed")

        summary = ingest(modality, root, batch_id=context.run_id, progress=progress)
        context.log.info(
            f"{modality.name}: {summary.files_seen} files seen, {summary.files_skipped} "
            f"already ingested, {summary.files_ingested} ingested, "
            f"{summary.files_quarantined} quarantined, {summary.problems} problems")
        for spec in modality.tables:
            yield dg.MaterializeResult(asset_key=spec.name.split("."), metadata={
                **table_metadata(spec.name),
                "batch_id": context.run_id,
                "rows_written": summary.rows.get(spec.name, 0),
                "files_seen": summary.files_seen,
                "files_skipped": summary.files_skipped,
                "files_ingested": summary.files_ingested,
                "files_quarantined": summary.files_quarantined,
                "problems_quarantined": summary.problems,
            })

    return _assets
