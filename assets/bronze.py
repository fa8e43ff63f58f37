"""One factory for the landing → bronze assets, so every modality ingests, quarantines,
logs and reports metadata the same way."""
import dagster as dg

from medlake import lake, landing
from medlake.config import get_settings
from medlake.ingest import Modality, ingest
from orchestration.policies import POOL_BRONZE, TRANSIENT_RETRY
from quality.gx_runner import data_docs_index
from quality.suites import SUITES

# One partition per ingest batch (key = batch id), added by the landing sensors. Shared by
# every modality because a job may hold only one partitions definition; a batch holds one
# modality's files, so the other modalities' assets have nothing to do for it.
INGEST_BATCHES = dg.DynamicPartitionsDefinition(name="ingest_batches")


def preview(table: str, rows: int = 5, width: int = 40) -> dg.MetadataValue | None:
    """The first rows as a Markdown table. Only for de-identified layers: bronze holds
    identifiers, which must not be copied into Dagster's event log."""
    if table.split(".")[0] == "bronze":
        return None
    data = lake.read(table, f"SELECT * FROM t LIMIT {rows}")
    cols = [f.name for f in data.schema
            if not (str(f.type).startswith(("list", "large_list", "fixed_size_list", "binary")))]
    if not data.num_rows or not cols:
        return None

    def cell(v) -> str:
        text = "" if v is None else str(v).replace("|", "/").replace("\n", " ")
        return text if len(text) <= width else text[:width - 1] + "…"

    lines = ["| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
    lines += ["| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in data.to_pylist()]
    return dg.MetadataValue.md("\n".join(lines))


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
        "dagster/table_name": table,
        "delta_version": dg.MetadataValue.int(s["version"]),
        **({"preview": p} if (p := preview(table)) is not None else {}),
        # Where the table's Great Expectations results are published (after its check runs).
        **({"data_docs": dg.MetadataValue.path(str(data_docs_index()))}
           if table in SUITES else {}),
    }


def sole_bronze_writer(instance: dg.DagsterInstance) -> bool:
    """Whether an ingest run by this instance is bronze's only writer, so it may append
    new keys: MEDLAKE_BRONZE_WRITERS is 1 and the lake_bronze pool admits one step at a
    time. A pool that admits more (a deployment's own limit or dagster.yaml default, a
    setting changed without `medlake run` or `make dev` applying it, storage that
    enforces no pools) turns appends off: MERGEs are right with any number of writers,
    appends only with one."""
    if not get_settings().sole_bronze_writer:
        return False
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    limits = {p.name: p.limit for p in storage.get_pool_limits()}
    limit = limits.get(POOL_BRONZE, instance.get_concurrency_config().pool_config.default_pool_limit)
    return limit is not None and limit <= 1


def bronze_assets(modality: Modality, *, folder: str, group: str):
    """One multi-asset that ingests `landing/<folder>/` into all of the modality's bronze
    tables in a single pass over the files. Bad files and entries go to
    `bronze.quarantine`, every file to `bronze.ingest_log`.

    Partitioned by ingest batch: a partition's run ingests the files in the batch's
    manifest (what the landing sensor saw); an unpartitioned run (refresh_all, the nightly
    refresh) ingests every new file. Either way a file already in the ingest log is
    skipped, so re-running a batch or backfilling many is safe. A batch that adds nothing to
    a table does not materialize it, so nothing downstream re-runs for it."""
    specs = [dg.AssetSpec(key=spec.name.split("."), group_name=group,
                          description=spec.description, kinds={"delta", "python"},
                          owners=["team:data-platform"],
                          tags={"layer": "bronze", "domain": group},
                          partitions_def=INGEST_BATCHES, skippable=True)
             for spec in modality.tables]

    @dg.multi_asset(specs=specs, name=f"ingest_{modality.name}", pool=POOL_BRONZE,
                    retry_policy=TRANSIENT_RETRY)
    def _assets(context: dg.AssetExecutionContext):
        root = get_settings().landing / folder
        files, batch_id = None, context.run_id
        if context.has_partition_key:
            batch_id = context.partition_key
            manifest = landing.read_manifest(batch_id)
            files = manifest.paths() if manifest.modality == modality.name else []
            context.log.info(f"batch {batch_id}: {len(files)} {modality.name} files")
        else:
            # On object storage, the objects not ingested yet are fetched first.
            root = landing.stage(modality.name, folder, modality.patterns)
            if not root.exists():
                context.log.warning(f"{landing.location(folder)} does not exist; nothing to "
                                    "ingest. Drop files there or run `medlake generate`.")

        def progress(done: int, total: int) -> None:
            context.log.info(f"{modality.name}: {done}/{total} new files processed")

        sole = sole_bronze_writer(context.instance)
        if not sole:
            context.log.info("other ingests may write bronze meanwhile: every write is a MERGE")
        summary = ingest(modality, root, batch_id=batch_id, progress=progress, files=files,
                         sole_writer=sole)
        context.log.info(
            f"{modality.name}: {summary.files_seen} files seen, {summary.files_skipped} "
            f"already ingested, {summary.files_ingested} ingested, "
            f"{summary.files_quarantined} quarantined, {summary.problems} problems, "
            f"{summary.commit_retries} commit conflicts retried")
        if summary.unlogged:
            context.log.warning(
                f"{modality.name}: {len(summary.unlogged)} files landed since a killed run "
                "left rows of a file now quarantined may have relied on those rows; "
                f"{summary.files_relanded} of them landed again in this run.")
        for spec in modality.tables:
            if context.has_partition_key and not (summary.rows.get(spec.name, 0)
                                                  or summary.problems):
                context.log.info(f"{spec.name}: nothing new in batch {batch_id}")
                continue
            yield dg.MaterializeResult(asset_key=spec.name.split("."), metadata={
                **table_metadata(spec.name),
                "batch_id": batch_id,
                "rows_written": summary.rows.get(spec.name, 0),
                "files_seen": summary.files_seen,
                "files_skipped": summary.files_skipped,
                "files_ingested": summary.files_ingested,
                "files_quarantined": summary.files_quarantined,
                "problems_quarantined": summary.problems,
                "commit_retries": summary.commit_retries,
                "files_relanded": summary.files_relanded,
            })

    return _assets
