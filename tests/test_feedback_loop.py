"""Feedback loop: ratings through POST /v1/feedback land in gold.feedback, and
gold.eval_dataset exports them with their questions, answers and evidence."""
import json

import dagster as dg
from fastapi.testclient import TestClient

from assets.generation import assets as generation
from assets.generation import evaluation
from medlake import lake
from serving import rag
from serving.app import create_app
from serving.feedback import FEEDBACK

TOKEN = "0123456789abcdef-nurse"


def test_feedback_flows_into_the_eval_dataset(demo_copy):
    with TestClient(create_app(tokens=f"nurse-kim:{TOKEN}")) as c:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        asked = [c.post("/v1/ask", headers=auth, json={"question": q, "k": 2}).json()
                 for q in ("Any allergies?", "What did the chest imaging show?")]
        for a, rating in zip(asked, (5, 2)):
            r = c.post("/v1/feedback", headers=auth, json={
                "answer_id": a["answer_id"], "rating": rating,
                "comment": "Checked with the patient on 555-201-3344."})
            assert r.status_code == 201, r.text
    given = lake.read(FEEDBACK).to_pylist()
    assert len(given) == 2 and {g["given_by"] for g in given} == {"nurse-kim"}
    assert all("555-201-3344" not in g["comment"] for g in given)

    assert dg.materialize([generation.eval_dataset]).success
    version = lake.version(evaluation.EVAL)
    lines = [json.loads(x) for x in evaluation.jsonl_path().read_text().splitlines()]
    assert sorted(x["rating"] for x in lines) == [2, 5]
    by_answer = {x["answer_id"]: x for x in lines}
    for a in asked:
        x = by_answer[a["answer_id"]]
        assert x["answer"] == a["answer"] and x["question"]
        assert [ctx["chunk_id"] for ctx in x["contexts"]] == [c["chunk_id"] for c in a["citations"]]
        assert all(ctx["text"] and ctx["source_table"] in rag.KEYS
                   and isinstance(ctx["source_version"], int) for ctx in x["contexts"])
    assert lake.read(evaluation.EVAL, "SELECT count(*) FROM t").column(0)[0].as_py() == 2

    # Nothing new: neither the Delta table nor the file is rewritten.
    mtime = evaluation.jsonl_path().stat().st_mtime_ns
    result = dg.materialize([generation.eval_dataset])
    meta = result.asset_materializations_for_node("gold__eval_dataset")[0].metadata
    assert lake.version(evaluation.EVAL) == version and meta["jsonl_rewritten"].value is False
    assert evaluation.jsonl_path().stat().st_mtime_ns == mtime


def test_known_item_questions_name_one_answering_document(demo):
    questions = evaluation.known_item_questions()
    docs = {d["document_id"]: d["text"] for d in lake.read(
        "silver.document", "SELECT document_id, text FROM t WHERE text IS NOT NULL").to_pylist()}
    assert len(questions) >= 5 and len({q["question_id"] for q in questions}) == len(questions)
    for q in questions:
        quoted = q["question"].removeprefix("Which record says: ").rstrip("?")
        holders = [d for d, text in docs.items() if quoted in " ".join(text.split())]
        assert holders == [q["document_id"]], q
    assert evaluation.known_item_questions() == questions  # stable between runs


def test_retrieval_eval_records_recall_and_mrr_as_metadata(demo):
    result = dg.materialize([generation.retrieval_eval])
    meta = result.asset_materializations_for_node("retrieval_eval")[0].metadata
    assert meta["questions"].value == len(evaluation.known_item_questions()) >= 5
    assert 0.5 <= meta["recall_at_10"].value <= 1.0  # known-item questions quote their document
    assert 0 < meta["mrr"].value <= meta["recall_at_10"].value
