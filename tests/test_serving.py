"""The RAG HTTP service on the demo lake (real Delta, LanceDB, embeddings), through
FastAPI's in-process test client; the fake OpenAI-protocol server stands in for vLLM."""
import json

import pytest
from fastapi.testclient import TestClient

from medlake import lake
from serving.app import create_app
from serving.auth import TokenConfigError, parse_tokens
from serving.rag import AUDIT, Citation, resolve
from tests.fake_llm import FakeLLM

DR = "dr-lee:tok-dr-lee-0123456789"
BOT = "qa-bot:tok-qa-bot-0123456789:search"


def bearer(entry: str) -> dict:
    return {"Authorization": f"Bearer {entry.split(':')[1]}"}


@pytest.fixture
def client(demo):
    with TestClient(create_app(tokens=f"{DR},{BOT}")) as c:
        yield c


def notes(home) -> list[dict]:
    return lake.read("silver.document", "SELECT document_id, person_key, text FROM t "
                     "WHERE text IS NOT NULL ORDER BY document_id").to_pylist()


def test_ask_about_a_patient_cites_the_right_document_and_audit_resolves(client, demo, monkeypatch):
    # A generated patient's imaging report: the one document of its kind for that person.
    doc = lake.read("silver.document", "SELECT document_id, person_key, doc_type, text FROM t "
                    "WHERE text LIKE 'RADIOLOGY REPORT%' ORDER BY document_id").to_pylist()[0]
    with FakeLLM() as llm:  # it cites the top-ranked chunk it was shown
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_MODEL", "test-model")
        r = client.post("/v1/ask", headers=bearer(DR), json={
            "question": f"What did the {doc['doc_type']} imaging report show? MRN 12345678.",
            "person_key": doc["person_key"], "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "test-model" and body["flags"]["cited_ok"]
    assert body["flags"]["model_used"] and not body["flags"]["unknown_citations"]
    cited = body["citations"][0]
    assert cited["source_table"] == "silver.document" and cited["source_key"] == doc["document_id"]
    # The audit row names the principal (never the token), what was retrieved, and
    # each retrieved chunk resolves to its source row at the recorded Delta version.
    audit = lake.read(AUDIT, "SELECT * FROM t WHERE answer_id = ?", [body["answer_id"]]).to_pylist()
    assert len(audit) == 1
    row = audit[0]
    assert row["asked_by"] == "dr-lee" and "tok-dr-lee" not in json.dumps(row, default=str)
    assert "12345678" not in row["question"] and row["person_key"] == doc["person_key"]
    retrieved = json.loads(row["retrieved"])
    assert len(retrieved) == 3 and retrieved[0]["chunk_id"] == cited["chunk_id"]
    assert json.loads(row["flags"])["cited_ok"] is True
    source = resolve(Citation(**json.loads(row["citations"])[0]))
    assert source["document_id"] == doc["document_id"] and source["text"] == doc["text"]
    sent = llm.requests[0]["body"]["messages"][-1]["content"]
    assert "12345678" not in sent


def test_uncited_answer_is_flagged_in_response_and_audit(client, monkeypatch):
    with FakeLLM(reply="The patient is fine.") as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        r = client.post("/v1/ask", headers=bearer(DR), json={"question": "Any allergies?"})
    flags = r.json()["flags"]
    assert r.status_code == 200 and flags["uncited"] and not flags["cited_ok"]
    assert r.json()["citations"] == []
    row = lake.read(AUDIT, "SELECT flags, cited_ok FROM t WHERE answer_id = ?",
                    [r.json()["answer_id"]]).to_pylist()[0]
    assert row["cited_ok"] is False and json.loads(row["flags"])["uncited"] is True


def test_without_a_model_the_answer_says_so(client):
    r = client.post("/v1/ask", headers=bearer(DR), json={"question": "blood pressure", "k": 2})
    body = r.json()
    assert body["model"] is None and not body["flags"]["model_used"]
    assert "No language model was used" in body["answer"] and len(body["citations"]) == 2


def test_retries_with_backoff_then_answers(client, monkeypatch):
    with FakeLLM(fail_first=2) as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_RETRIES", "2")
        r = client.post("/v1/ask", headers=bearer(DR), json={"question": "chest imaging"})
    assert len(llm.requests) == 3 and r.json()["flags"]["model_used"]


def test_retries_are_bounded_then_evidence_with_reason(client, monkeypatch):
    with FakeLLM(fail_first=10) as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_RETRIES", "1")
        r = client.post("/v1/ask", headers=bearer(DR), json={"question": "chest imaging"})
    body = r.json()
    assert r.status_code == 200 and len(llm.requests) == 2
    assert body["model"] is None and "failed" in body["flags"]["fallback_reason"]


def test_search_returns_chunks_with_provenance(client, demo):
    pk = notes(demo)[0]["person_key"]
    r = client.post("/v1/search", headers=bearer(BOT),
                    json={"query": "medications", "person_key": pk, "k": 4})
    hits = r.json()["hits"]
    assert r.status_code == 200 and 0 < len(hits) <= 4
    assert {h["person_key"] for h in hits} == {pk}
    assert all(h["source_table"] == "silver.document" and h["text"] for h in hits)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-0123456789"},
                                     {"Authorization": "Basic ZHI6bGVl"}])
def test_no_valid_token_no_data(client, headers):
    for path, body in [("/v1/ask", {"question": "any allergies?"}),
                       ("/v1/search", {"query": "any allergies?"}),
                       ("/v1/feedback", {"answer_id": "0" * 36, "rating": 3})]:
        r = client.post(path, headers=headers, json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.headers["www-authenticate"] == "Bearer" and "hits" not in r.text


def test_no_tokens_configured_refuses_everyone(demo):
    with TestClient(create_app(tokens="")) as c:
        assert c.post("/v1/search", json={"query": "x y z"},
                      headers={"Authorization": "Bearer "}).status_code == 401
        assert c.get("/health").json()["auth"] == "0 token(s) configured"


def test_token_without_scope_is_forbidden(client):
    r = client.post("/v1/ask", headers=bearer(BOT), json={"question": "any allergies?"})
    assert r.status_code == 403 and "'ask' scope" in r.json()["detail"]
    assert client.post("/v1/feedback", headers=bearer(BOT),
                       json={"answer_id": "0" * 36, "rating": 3}).status_code == 403


@pytest.mark.parametrize("path,body,field", [
    ("/v1/ask", {}, "question"),
    ("/v1/ask", {"question": "  "}, "question"),
    ("/v1/ask", {"question": "x" * 2001}, "question"),
    ("/v1/ask", {"question": "allergies?", "k": 0}, "k"),
    ("/v1/ask", {"question": "allergies?", "person_key": "not-a-key"}, "person_key"),
    ("/v1/ask", {"question": "allergies?", "filters": {"doc_type": "x' OR 1=1 --"}}, "doc_type"),
    ("/v1/ask", {"question": "allergies?", "filters": {"date_from": "2025-02-01",
                                                       "date_to": "2025-01-01"}}, "filters"),
    ("/v1/ask", {"question": "allergies?", "surprise": 1}, "surprise"),
    ("/v1/search", {"query": "allergies", "k": 101}, "k"),
    ("/v1/feedback", {"answer_id": "0" * 36, "rating": 6}, "rating"),
])
def test_malformed_requests_get_422_naming_the_field(client, path, body, field):
    r = client.post(path, headers=bearer(DR), json=body)
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])


def test_feedback_on_unknown_answer_is_404(client):
    r = client.post("/v1/feedback", headers=bearer(DR),
                    json={"answer_id": "00000000-0000-0000-0000-000000000000", "rating": 4})
    assert r.status_code == 404 and "answer_id" in r.json()["detail"]


def test_health_and_openapi_need_no_token_and_show_no_data(client):
    assert client.get("/health").json()["status"] == "ok"
    spec = client.get("/openapi.json").json()
    assert {"/v1/ask", "/v1/search", "/v1/feedback", "/health"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_token_configuration_errors_say_what_is_wrong():
    assert parse_tokens("a:0123456789abcdef, b:fedcba9876543210:search+feedback")[
        "fedcba9876543210"].scopes == {"search", "feedback"}
    for bad, words in [("nocolon", "principal:token"), ("a:short", "16 characters"),
                       ("a:0123456789abcdef:admin", "unknown scope")]:
        with pytest.raises(TokenConfigError, match=words):
            parse_tokens(bad)


def test_serve_refuses_to_start_on_bad_token_configuration(monkeypatch, capsys):
    from medlake.cli import main

    monkeypatch.setenv("MEDLAKE_API_TOKENS", "dr-lee:short")
    assert main(["serve"]) == 2
    assert "16 characters" in capsys.readouterr().err


def test_concurrent_appends_all_land_in_few_commits(home):
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    from serving.audit import AppendLog

    log = AppendLog("gold.append_test", pa.schema([("i", pa.int64())]))
    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda i: log.append({"i": i}), range(60)))
    got = lake.read("gold.append_test", "SELECT i FROM t ORDER BY i").column(0).to_pylist()
    assert got == list(range(60))
    assert lake.version("gold.append_test") < 60  # requests shared commits
