import dagster as dg

from assets.retrieval import vectors
from medlake import lake
from orchestration.policies import POOL_VECTORS, TRANSIENT_RETRY, follows_upstream


def read_sources(log=None) -> list[tuple[vectors.Source, int, list[dict]]]:
    """Each text source that exists, at its current Delta version, with its rows."""
    batches = []
    for source in vectors.SOURCES:
        version = lake.version(source.table)
        if version is None:
            # Not an error: the imaging domain may not have built its reports yet.
            if log:
                log(f"{source.table} does not exist yet; its chunks are left as they are")
            continue
        rows = lake.read(source.table, source.sql, version=version).to_pylist()
        batches.append((source, version, rows))
    return batches


@dg.asset(
    key=["vectors", "clinical_chunks"], group_name="retrieval",
    deps=[["silver", "document"], ["gold", "imaging_report"]], kinds={"lancedb", "pytorch", "python"},
    owners=["team:ml-platform"], tags={"layer": "vectors", "domain": "retrieval"},
    automation_condition=follows_upstream(), pool=POOL_VECTORS, retry_policy=TRANSIENT_RETRY,
)
def clinical_chunks(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """De-identified note text from `silver.document` and radiology reports from
    `gold.imaging_report` (when that table exists), split into section-aware,
    token-bounded chunks and embedded (all-MiniLM-L6-v2 by default) into LanceDB with a
    full-text index, and an ANN index once the table is large. Incremental: unchanged
    chunks are never re-embedded. Each chunk records the table, Delta version and row
    key it came from, which is what answers cite."""
    from assets.retrieval import embedder

    batches = read_sources(context.log.info)
    result = vectors.sync(batches, progress=context.log.info)
    context.log.info(f"{result.chunks} chunks: {result.embedded} embedded, "
                     f"{result.unchanged} unchanged, {result.deleted} deleted")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.chunks, "chunks_embedded": result.embedded,
        "chunks_unchanged": result.unchanged, "chunks_deleted": result.deleted,
        "lance_version": result.version, "embed_model": embedder.model_name(),
        "embed_backend": embedder.backend(),
        "source_versions": dg.MetadataValue.json(result.sources),
        "source_table": vectors.SOURCE_TABLE,
        "source_version": result.sources.get(vectors.SOURCE_TABLE),
    })
