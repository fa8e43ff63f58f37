"""Retrieval quality on known-item questions: each question names the document that
answers it, so recall@k (is that document among the first k hits?) and MRR (1 / rank of
its first hit) need no human labels."""
from __future__ import annotations

from collections.abc import Callable


def evaluate_retrieval(questions: list[dict], k: int = 10,
                       search: Callable | None = None, **options) -> dict[str, float]:
    """`questions`: dicts with `question` and the answering `document_id` (and
    optionally `person_key`, ignored: the question must find its own document).
    `options` go to the search (e.g. mode="vector")."""
    if search is None:
        from assets.retrieval.search import search
    if not questions:
        return {f"recall@{k}": 0.0, "mrr": 0.0, "questions": 0}
    hits_at_k, reciprocal = 0, 0.0
    for q in questions:
        ranked = [h.document_id for h in search(q["question"], k=k, **options)]
        if q["document_id"] in ranked:
            hits_at_k += 1
            reciprocal += 1.0 / (ranked.index(q["document_id"]) + 1)
    n = len(questions)
    return {f"recall@{k}": hits_at_k / n, "mrr": reciprocal / n, "questions": n}
