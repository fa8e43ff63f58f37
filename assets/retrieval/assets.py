import dagster as dg

from assets.retrieval import vectors
from medlake import lake
from orchestration.policies import POOL_VECTORS, TRANSIENT_RETRY, follows_upstream


@dg.asset(
    key=["vectors", "clinical_chunks"], group_name="retrieval",
    deps=[["silver", "document"]], kinds={"lancedb", "pytorch", "python"},
    owners=["team:ml-platform"], tags={"layer": "vectors", "domain": "retrieval"},
    automation_condition=follows_upstream(), pool=POOL_VECTORS, retry_policy=TRANSIENT_RETRY,
)
def clinical_chunks(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """De-identified note and report text from `silver.document`, split into overlapping
    chunks and embedded with all-MiniLM-L6-v2 into LanceDB. Incremental: unchanged chunks
    are never re-embedded. Each chunk records the silver.document Delta version and row
    key it came from, which is what answers cite."""
    version = lake.version(vectors.SOURCE_TABLE)
    docs = lake.read(vectors.SOURCE_TABLE, "SELECT document_id, person_key, doc_type, doc_date, "
                     "text FROM t WHERE text IS NOT NULL ORDER BY document_id").to_pylist()
    result = vectors.sync(docs, source_version=version, progress=context.log.info)
    context.log.info(f"{result.chunks} chunks: {result.embedded} embedded, "
                     f"{result.unchanged} unchanged, {result.deleted} deleted")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": result.chunks, "chunks_embedded": result.embedded,
        "chunks_unchanged": result.unchanged, "chunks_deleted": result.deleted,
        "lance_version": result.version, "source_table": vectors.SOURCE_TABLE,
        "source_version": version,
    })
