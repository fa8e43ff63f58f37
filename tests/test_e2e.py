"""The whole pipeline on generated patients, against real Delta, DuckDB, dbt, Dagster,
Great Expectations and LanceDB in a temporary MEDLAKE_HOME (built once per session by
the `demo_home` fixture in conftest.py).

Every test runs twice: on a local lake (`local`), and with the lake, the vectors and the
landing zone on a real S3 API server on loopback (`s3`, built once per session by
`s3_demo_home`). Only the configuration differs."""
import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medlake import lake, storage
from medlake.config import get_settings, is_remote
from medlake.pipeline import LAKE_TABLES, run, summarize
from serving.rag import AUDIT, Citation, ask, resolve
from conftest import S3_DEMO_BUCKET, use_home, use_s3
from tests.fake_llm import FakeLLM


@pytest.fixture(params=["local", "s3"])
def demo(request, monkeypatch) -> Path:
    """The demo lake, on local disk or on S3 (overrides conftest's local-only `demo`)."""
    if request.param == "local":
        return use_home(monkeypatch, request.getfixturevalue("demo_home"))
    return use_s3(monkeypatch, request.getfixturevalue("s3_demo_home"),
                  request.getfixturevalue("s3_endpoint"), S3_DEMO_BUCKET)


def generated(home: Path) -> dict:
    return json.loads((home / "generated.json").read_text())


def count(table: str) -> int:
    return lake.read(table, "SELECT count(*) FROM t").column(0)[0].as_py()


def landing_resources(home: Path) -> list[dict]:
    """Every well-formed resource in the landing Bundles, read with plain json."""
    out = []
    for f in sorted((home / "landing" / "fhir").glob("*.json")):
        try:
            doc = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        for e in doc.get("entry", []) if isinstance(doc, dict) else []:
            r = e.get("resource") or {}
            if r.get("resourceType") and r.get("id"):
                out.append({**r, "_file": f.name})
    return out


def test_row_counts_per_table(demo):
    g = generated(demo)
    resources = landing_resources(demo)
    assert count("bronze.fhir_resources") == len(resources)
    good = [r for r in resources if r.get("_file", "").startswith("patient-")]
    assert len(good) == sum(g["fhir_resources"].values())
    assert count("bronze.dicom_instances") == g["dicom_files"]
    assert count("bronze.vcf_variants") == g["variants"]
    assert count("bronze.vcf_samples") == g["samples"]
    assert count("bronze.vcf_genotypes") == g["variants"] * g["samples"]
    patients = sum(r["resourceType"] == "Patient" for r in resources)
    assert count("silver.patient") == count("gold.patient_360") == patients
    with_text = sum(1 for r in resources
                    if r["resourceType"] == "DocumentReference"
                    or (r["resourceType"] == "DiagnosticReport" and r.get("presentedForm")))
    assert count("silver.document") == with_text == g["notes"] + g["imaging_studies"]
    assert summarize()["chunks"] >= with_text


def landed_uri(home: Path, path: str) -> str:
    """The URI the pipeline records for a generated file: its own path's, or on S3 the
    object's it was uploaded to (the files are generated into `home/landing`)."""
    settings = get_settings()
    rel = Path(path).resolve().relative_to(home / "landing")
    return settings.source_uri(settings.landing / rel)


def test_bad_files_are_quarantined_with_a_sentence_and_the_rest_lands(demo):
    g = generated(demo)
    rows = lake.read("bronze.quarantine").to_pylist()
    uris = [r["source_uri"] for r in rows]
    for bad in g["bad_files"]:
        assert any(u.split("#")[0] == landed_uri(demo, bad) for u in uris), bad
    for r in rows:
        assert re.match(r"^[A-Z].{15,}\.$", r["error"]), r["error"]
        assert r["modality"] in {"fhir", "dicom", "vcf"} and r["batch_id"]
    entries = [u for u in uris if "#entry=" in u]
    assert len(entries) == 2  # the missing-id and missing-resourceType entries, not the file
    # ...while the valid Patient from that same file landed:
    assert lake.read("bronze.fhir_resources", "SELECT 1 FROM t WHERE source_uri LIKE "
                     "'%bad-resource-missing-id.json' AND resource_type = 'Patient'").num_rows == 1


def test_the_s3_run_lands_what_the_local_run_lands(demo_home, s3_demo_home, s3_endpoint,
                                                    monkeypatch):
    """The same drop gives the same tables, rows, quarantine and chunks on both."""
    use_home(monkeypatch, demo_home)
    local = summarize()
    use_s3(monkeypatch, s3_demo_home, s3_endpoint, S3_DEMO_BUCKET)
    remote = summarize()
    assert {t: s["rows"] for t, s in remote["tables"].items()} == \
        {t: s["rows"] for t, s in local["tables"].items()}
    assert set(remote["tables"]) == set(LAKE_TABLES)
    assert remote["quarantined"] == local["quarantined"] and remote["chunks"] == local["chunks"]
    # Nothing of the lake or the vectors was written under MEDLAKE_HOME: it is all in S3.
    assert not (s3_demo_home / "lake").exists() and not (s3_demo_home / "vectors").exists()
    assert lake.list_tables("bronze") and lake.uri("bronze.quarantine").startswith("s3://")


def test_second_run_changes_nothing(demo):
    before = {t: lake.version(t) for t in LAKE_TABLES}
    counts = {t: count(t) for t in LAKE_TABLES}
    from assets.retrieval.vectors import open_table

    lance_before = open_table().version
    report = run(show_progress=False)
    assert report.success, report.failures
    assert {t: lake.version(t) for t in LAKE_TABLES} == before
    assert {t: count(t) for t in LAKE_TABLES} == counts
    assert open_table().version == lance_before


def local_mirror(home: Path, mirror: Path) -> Path:
    """`home` itself for a local lake. The contract check reads MEDLAKE_HOME/lake and
    /vectors from disk only, so an S3 lake and its vectors are copied byte for byte
    (Delta and Lance address their files relative to the table) into `mirror`."""
    settings = get_settings()
    if not is_remote(settings.lake_uri):
        return home
    fs = storage.filesystem()
    for uri, folder in ((settings.lake_uri, "lake"), (settings.vectors, "vectors")):
        fs.get(storage.strip(uri).rstrip("/") + "/", str(mirror / folder) + "/", recursive=True)
    return mirror


def test_table_contract_holds(demo, shared, tmp_path):
    out = subprocess.run([sys.executable, str(shared / "checks" / "contract.py"),
                          str(local_mirror(demo, tmp_path / "mirror")),
                          "--require", "bronze.fhir_resources", "bronze.dicom_instances",
                          "bronze.vcf_variants", "bronze.vcf_genotypes", "bronze.quarantine",
                          "silver.patient", "silver.document", "gold.patient_360",
                          "vectors.clinical_chunks"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "contract: holds" in out.stdout


def _phi_values(home: Path) -> set[str]:
    """Identifier values of every patient, taken from the landing files."""
    values = set()
    for r in landing_resources(home):
        if r["resourceType"] != "Patient":
            continue
        for n in r.get("name", []):
            values.update([n.get("family", "")] + n.get("given", []))
        values.update(i.get("value", "") for i in r.get("identifier", []))
        values.update(t.get("value", "") for t in r.get("telecom", []))
        for a in r.get("address", []):
            values.update(a.get("line", []) + [a.get("city", ""), a.get("postalCode", "")])
        values.add(r.get("birthDate", ""))
    return {v for v in values if len(v) >= 4}


def _all_text(home: Path) -> str:
    from assets.retrieval.vectors import open_table

    parts = []
    for t in ["silver.patient", "silver.document", "gold.patient_360"]:
        parts.append(json.dumps(lake.read(t).to_pylist(), default=str))
    chunks = open_table().to_arrow().drop_columns(["vector"]).to_pylist()
    parts.append(json.dumps(chunks, default=str))
    return "\n".join(parts)


def test_no_identifier_reaches_silver_gold_or_embeddings(demo):
    phi = _phi_values(demo)
    assert len(phi) > 20
    text = _all_text(demo)
    leaked = sorted(v for v in phi if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text))
    assert leaked == []
    # The notes in bronze did carry those identifiers: the scrubber had work to do.
    note = next(r for r in landing_resources(demo) if r["resourceType"] == "DocumentReference")
    raw = base64.b64decode(note["content"][0]["attachment"]["data"]).decode()
    assert any(v in raw for v in phi)


def test_person_key_links_every_modality(demo):
    rows = lake.read("gold.patient_360").to_pylist()
    assert sum(r["has_imaging"] for r in rows) >= 1
    assert sum(r["has_genomics"] for r in rows) == generated(demo)["samples"]


def test_ask_without_model_cites_existing_rows(demo):
    answer = ask("Which patient has poorly controlled diabetes and a high HbA1c?", k=4)
    assert answer.model is None and "No language model was used" in answer.answer
    assert len(answer.citations) == 4
    for c, hit in zip(answer.citations, answer.evidence):
        row = resolve(c)
        assert row is not None, c
        assert " ".join(hit.text.split()) in " ".join(row["text"].split())
    audit = lake.read(AUDIT, f"SELECT * FROM t WHERE answer_id = '{answer.answer_id}'").to_pylist()
    assert len(audit) == 1 and json.loads(audit[0]["citations"])[0]["chunk_id"] == answer.citations[0].chunk_id


def test_ask_through_openai_compatible_endpoint(demo, monkeypatch):
    with FakeLLM() as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        monkeypatch.setenv("MEDLAKE_LLM_MODEL", "test-model")
        answer = ask("What did the chest imaging show? Call me at 555-201-3344.", k=3)
    assert answer.model == "test-model" and answer.cited_ok
    assert [c.chunk_id for c in answer.citations] == [answer.evidence[0].chunk_id]
    sent = llm.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["model"] == "test-model"
    prompt = sent["body"]["messages"][-1]["content"]
    assert "555-201-3344" not in prompt and "[PHONE]" in prompt
    assert not [v for v in _phi_values(demo) if v in prompt]
    assert resolve(answer.citations[0]) is not None


def test_wrong_citations_are_flagged(demo, monkeypatch):
    with FakeLLM(reply="Made up [00000000000000000000000000000000-000].") as llm:
        monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", llm.base_url)
        answer = ask("Any allergies?", k=2)
    assert not answer.cited_ok and answer.citations == []
    row = lake.read(AUDIT, f"SELECT cited_ok FROM t WHERE answer_id = '{answer.answer_id}'")
    assert row.column(0).to_pylist() == [False]


def test_resolve_reads_the_cited_version(demo):
    c = ask("blood pressure", k=1).citations[0]
    wrong = Citation(c.chunk_id, c.source_table, c.source_version, "no-such-document", 0.0)
    assert resolve(wrong) is None


def test_materializations_record_delta_versions_for_time_travel(demo):
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        for key in (["bronze", "fhir_resources"], ["bronze", "vcf_genotypes"],
                    ["silver", "patient"], ["silver", "document"], ["gold", "patient_360"]):
            event = instance.get_latest_materialization_event(dg.AssetKey(key))
            meta = event.asset_materialization.metadata
            assert meta["delta_version"].value == lake.version(".".join(key)), key
            assert meta["dagster/row_count"].value == count(".".join(key)), key
        chunks = instance.get_latest_materialization_event(
            dg.AssetKey(["vectors", "clinical_chunks"])).asset_materialization.metadata
        assert chunks["source_version"].value == lake.version("silver.document")


def test_unreachable_model_falls_back_to_evidence_and_says_why(demo, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    monkeypatch.setenv("MEDLAKE_LLM_BASE_URL", dead)
    monkeypatch.setenv("MEDLAKE_LLM_TIMEOUT", "2")
    answer = ask("Any allergies?", k=2)
    assert answer.model is None and "could not answer" in answer.answer
    assert "the model call failed" in answer.answer and len(answer.citations) == 2
