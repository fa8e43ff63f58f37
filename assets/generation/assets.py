import dagster as dg

from assets.generation import evaluation, summaries
from assets.retrieval.evaluation import evaluate_retrieval
from medlake import lake
from orchestration.policies import POOL_DBT, POOL_VECTORS, TRANSIENT_RETRY, follows_upstream
from serving.feedback import FEEDBACK
from serving.rag import AUDIT

# Written by the RAG service (`medlake serve`), not by Dagster: declared so lineage
# shows where the feedback loop's inputs come from.
rag_audit = dg.AssetSpec(
    ["gold", "rag_audit"], group_name="generation", kinds={"delta", "fastapi"},
    owners=["team:ml-platform"], tags={"layer": "gold"},
    description="Every answer of the RAG service (POST /v1/ask) and of batch summaries: "
                "scrubbed question, answer, model, who asked, and each retrieved chunk with "
                "its source table, Delta version and row key. Appended by `medlake serve`.")
feedback = dg.AssetSpec(
    ["gold", "feedback"], group_name="generation", kinds={"delta", "fastapi"},
    owners=["team:ml-platform"], tags={"layer": "gold"}, deps=[rag_audit],
    description="Clinicians' 1-5 ratings of answers with a scrubbed comment and who gave "
                "them. Appended by POST /v1/feedback.")


@dg.asset(
    key=["gold", "patient_summary"], group_name="generation",
    deps=[["vectors", "clinical_chunks"]], kinds={"delta", "openai", "python"},
    owners=["team:ml-platform"], tags={"layer": "gold", "domain": "generation"},
    automation_condition=follows_upstream(), pool=POOL_DBT, retry_policy=TRANSIENT_RETRY,
)
def patient_summary(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """One cited summary per person, written by the LLM (MEDLAKE_LLM_BASE_URL) through the
    same path as /v1/ask, or evidence-only without a model. Only persons whose chunks
    changed (by content hash), or whose summary used another model or prompt, are
    regenerated; at most MEDLAKE_LLM_CONCURRENCY calls run at once. Each row keeps its
    citations (source table, Delta version, row key), the model and the audit answer_id."""
    r = summaries.refresh(progress=context.log.info)
    context.log.info(f"{r.persons} persons: {r.generated} summarized, {r.unchanged} "
                     f"unchanged, {r.removed} removed, {r.flagged} with flagged citations")
    return dg.MaterializeResult(metadata={
        "dagster/row_count": r.persons, "summaries_generated": r.generated,
        "summaries_unchanged": r.unchanged, "summaries_removed": r.removed,
        "citations_flagged": r.flagged, "delta_version": r.version,
    })


@dg.asset(
    key=["gold", "eval_dataset"], group_name="generation", deps=[rag_audit, feedback],
    kinds={"delta", "json", "python"}, owners=["team:ml-platform"],
    tags={"layer": "gold", "domain": "generation"},
    automation_condition=follows_upstream(), pool=POOL_DBT, retry_policy=TRANSIENT_RETRY,
)
def eval_dataset(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Rated answers for evaluation and fine-tuning: each rating in gold.feedback joined
    to its question, answer, model and the evidence shown (chunk text plus source table,
    Delta version and row key). Written as a Delta table and as JSONL under
    MEDLAKE_HOME/exports/eval_dataset.jsonl; neither is rewritten when nothing changed."""
    rows = evaluation.rated_answers()
    written, path, file_changed = evaluation.export(rows)
    ratings = [r["rating"] for r in rows]
    return dg.MaterializeResult(metadata={
        "dagster/row_count": len(rows), "delta_version": written.version,
        "mean_rating": round(sum(ratings) / len(ratings), 3) if ratings else 0.0,
        "jsonl": dg.MetadataValue.path(str(path)), "jsonl_rewritten": file_changed,
    })


@dg.asset(
    key=["retrieval_eval"], group_name="generation",
    deps=[["vectors", "clinical_chunks"]], kinds={"lancedb", "python"},
    owners=["team:ml-platform"], tags={"layer": "vectors", "domain": "generation"},
    # Reads the vectors only, but in their pool so it never scores a half-synced table.
    automation_condition=follows_upstream(), pool=POOL_VECTORS, retry_policy=TRANSIENT_RETRY,
)
def retrieval_eval(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    """Retrieval quality on known-item questions derived from the de-identified notes
    (each question's answering document is known): recall@k and MRR, recorded as
    metadata so the trend across materializations shows in the UI's plots."""
    questions = evaluation.known_item_questions()
    k = 10
    scores = evaluate_retrieval(questions, k)
    context.log.info(f"{len(questions)} questions: {scores}")
    return dg.MaterializeResult(metadata={
        f"recall_at_{k}": float(scores[f"recall@{k}"]), "mrr": float(scores["mrr"]),
        "questions": len(questions), "k": k, "search_mode": "hybrid",
        "source_version": lake.version("silver.document"),
    })
