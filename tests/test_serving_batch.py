"""gold.patient_summary: one cited summary per person through the same ask path,
regenerated only for persons whose chunks changed (LLM calls counted on the fake server)."""
import json
import re

import dagster as dg

from assets.generation import assets as generation
from assets.generation import summaries
from assets.retrieval.vectors import open_table
from medlake import lake
from serving.rag import AUDIT
from tests.fake_llm import FakeLLM


def summary_rows() -> dict[str, dict]:
    return {r["person_key"]: r for r in lake.read(summaries.SUMMARY).to_pylist()}


def test_pipeline_wrote_evidence_only_summaries_for_every_person(demo):
    rows = summary_rows()
    persons = lake.read("gold.patient_360", "SELECT person_key FROM t").column(0).to_pylist()
    with_chunks = set(summaries.person_chunks())
    assert set(rows) == with_chunks and with_chunks <= set(persons)
    for r in rows.values():
        assert r["model"] is None and "No language model was used" in r["summary"]
        assert json.loads(r["citations"]) and r["cited_ok"]


def test_regenerates_only_changed_persons_with_bounded_concurrency(demo_copy, monkeypatch):
    persons = summaries.person_chunks()
    assert len(persons) >= 3
    with FakeLLM(delay=0.2) as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_MODEL", "test-model")
        monkeypatch.setenv("MEDLAKE_LLM_CONCURRENCY", "2")
        # A model now answers where none did: every summary's inputs changed.
        result = dg.materialize([generation.patient_summary])
        assert result.success
        first = summary_rows()
        assert len(llm.requests) == len(persons) and 1 <= llm.max_in_flight <= 2
        assert {r["model"] for r in first.values()} == {"test-model"}
        for pk, r in first.items():
            cited = json.loads(r["citations"])
            assert r["cited_ok"] and cited and all(c["chunk_id"] in dict(persons[pk]) for c in cited)
            audit = lake.read(AUDIT, "SELECT asked_by, person_key FROM t WHERE answer_id = ?",
                              [r["answer_id"]]).to_pylist()
            assert audit == [{"asked_by": summaries.ASKED_BY, "person_key": pk}]
        version = lake.version(summaries.SUMMARY)

        # Nothing changed: no model call, no new Delta version.
        assert summaries.refresh().generated == 0
        assert len(llm.requests) == len(persons) and lake.version(summaries.SUMMARY) == version

        # One chunk of one person changes: only that person is summarized again.
        changed = sorted(persons)[1]
        chunk_id = persons[changed][0][0]
        open_table().update(where=f"chunk_id = '{chunk_id}'", values={"content_hash": "edited"})
        result = summaries.refresh()
        assert result.generated == 1 and result.unchanged == len(persons) - 1
        assert len(llm.requests) == len(persons) + 1
        prompt = llm.requests[-1]["body"]["messages"][-1]["content"]
        shown = set(re.findall(r"\[([0-9a-f]{32}-\d{3})\]", prompt))
        assert shown and shown <= set(dict(persons[changed]))
    after = summary_rows()
    assert after[changed]["answer_id"] != first[changed]["answer_id"]
    assert {pk: r["answer_id"] for pk, r in after.items() if pk != changed} == \
        {pk: r["answer_id"] for pk, r in first.items() if pk != changed}


def test_a_failed_model_call_is_retried_on_the_next_run(demo_copy, monkeypatch):
    with FakeLLM(fail_first=1000) as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_RETRIES", "0")
        summaries.refresh()
        assert {r["model"] for r in summary_rows().values()} == {None}
        llm.fail_first = 0
        assert summaries.refresh().generated == len(summary_rows())
    assert {r["model"] for r in summary_rows().values()} == {"default"}
