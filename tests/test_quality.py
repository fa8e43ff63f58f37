"""Quality suites, medlake's rules and the PHI leak guard on small real Delta tables in a
temporary lake: clean data passes, each kind of bad row fails the right expectation
with the right severity."""
import json
from datetime import date

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from medlake import lake, privacy
from medlake.pipeline import LAKE_TABLES
from quality import checks, phi
from quality.gx_runner import DQ_RESULTS, run_suite
from quality.suites import SUITES, Expectation, load_suites

PEOPLE = ["a" * 32, "b" * 32]


def write(table: str, rows: list[dict], schema: pa.Schema | None = None) -> None:
    write_deltalake(lake.uri(table), pa.Table.from_pylist(rows, schema), mode="overwrite",
                    schema_mode="overwrite")


def patients(home) -> None:
    write("silver.patient", [dict(person_key=k, gender="female", birth_year=1970,
                                  batch_id="b1", source_sha256="f" * 64) for k in PEOPLE])


def documents(**bad) -> list[dict]:
    rows = [dict(document_id=f"d{i}", person_key=PEOPLE[i % 2], source_resource_type="DocumentReference",
                 doc_date=date(2024, 1, 1 + i),
                 text="Patient [REDACTED] seen for cough.", batch_id="b1", source_sha256="f" * 64)
            for i in range(4)]
    rows[0].update(bad)
    return rows


def outcome(result, type_, column=None):
    found = [o for o in result.outcomes if o.expectation.type == type_
             and (column is None or o.expectation.kwargs.get("column") == column)]
    assert found, f"{type_}({column}) was not evaluated"
    return found[0]


def test_every_table_of_this_branch_has_a_suite():
    for table in [*LAKE_TABLES, "bronze.ingest_log", "gold.rag_audit"]:
        assert table in SUITES, f"quality/suites/{table}.json is missing"


def test_a_suite_with_an_unknown_severity_is_refused(tmp_path):
    (tmp_path / "silver.x.json").write_text(json.dumps({"table": "silver.x", "expectations": [
        {"type": "ExpectColumnValuesToNotBeNull", "kwargs": {"column": "a"}, "severity": "fatal"}]}))
    with pytest.raises(ValueError, match="severity"):
        load_suites(tmp_path)


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_clean_data_passes_and_results_are_recorded(home, engine):
    patients(home)
    write("silver.document", documents())
    r = run_suite("silver.document", engine=engine, run_id="run-clean", docs=False)
    assert r.success and not r.failed, r.failed
    # The person_key rule was added although the suite does not name it.
    assert outcome(r, "ExpectPersonKeyInPatient").success
    got = lake.read(DQ_RESULTS, "SELECT * FROM t WHERE run_id = 'run-clean'").to_pylist()
    assert len(got) == r.evaluated
    assert {g["table_name"] for g in got} == {"silver.document"}
    assert all(g["delta_version"] == lake.version("silver.document") and g["success"] for g in got)


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_null_key_and_orphan_person_key_fail_as_errors(home, engine):
    patients(home)
    write("silver.document", documents(document_id=None, person_key="c" * 32))
    r = run_suite("silver.document", engine=engine, docs=False)
    assert not r.success
    assert not outcome(r, "ExpectColumnValuesToNotBeNull", "document_id").success
    orphan = outcome(r, "ExpectPersonKeyInPatient")
    assert not orphan.success and orphan.unexpected == 1
    assert "ExpectPersonKeyInPatient(person_key)" in r.failed_errors
    result = checks.check_result(r)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.ERROR


def test_a_new_table_with_person_key_gets_the_integrity_rule_without_a_suite(home):
    patients(home)
    write("gold.someone_elses_mart", [dict(person_key=PEOPLE[0]), dict(person_key="z" * 32)])
    r = run_suite("gold.someone_elses_mart", engine="duckdb", docs=False)
    assert r.failed_errors == ["ExpectPersonKeyInPatient(person_key)"]


VITALS = [Expectation("ExpectColumnValuesToBeBetween",
                      {"column": "heart_rate", "min_value": 20, "max_value": 250}, "warn"),
          Expectation("ExpectColumnValuesToNotBeNull", {"column": "observation_id"}, "error")]


@pytest.mark.parametrize("engine", ["duckdb", "pandas"])
def test_out_of_range_vitals_warn_without_blocking(home, engine):
    patients(home)
    rows = [dict(observation_id=f"o{i}", person_key=PEOPLE[0], heart_rate=60 + i) for i in range(5)]
    write("silver.vitals", rows)
    assert run_suite("silver.vitals", engine=engine, docs=False, suite=VITALS).success
    rows[2]["heart_rate"] = 900
    write("silver.vitals", rows)
    r = run_suite("silver.vitals", engine=engine, docs=False, suite=VITALS)
    assert r.failed == ["ExpectColumnValuesToBeBetween(heart_rate)"] and not r.failed_errors
    result = checks.check_result(r)
    assert not result.passed and result.severity == dg.AssetCheckSeverity.WARN


def test_row_count_drift_warns_against_the_previous_version(home):
    patients(home)
    write("silver.document", documents())
    assert run_suite("silver.document", engine="duckdb", docs=False).success
    write("silver.document", documents() + [dict(documents()[1], document_id=f"x{i}")
                                             for i in range(10)])
    r = run_suite("silver.document", engine="duckdb", docs=False)
    drift = outcome(r, "ExpectRowCountStable")
    assert not drift.success and drift.expectation.severity == "warn" and not r.failed_errors


def test_dates_in_the_future_and_stale_tables(home):
    from datetime import datetime, timedelta, timezone

    suite = [Expectation("ExpectColumnValuesNotInFuture", {"column": "d"}, "warn"),
             Expectation("ExpectTableFresh", {"column": "at", "max_age_hours": 1}, "warn")]
    now = datetime.now(timezone.utc)
    write("bronze.dates", [dict(d=date.today(), at=now)])
    assert run_suite("bronze.dates", engine="duckdb", docs=False, suite=suite).success
    write("bronze.dates", [dict(d=date.today() + timedelta(days=3), at=now - timedelta(hours=5))])
    r = run_suite("bronze.dates", engine="duckdb", docs=False, suite=suite)
    assert sorted(r.failed) == ["ExpectColumnValuesNotInFuture(d)", "ExpectTableFresh(at)"]


def bronze_patient(home, family="Whitfield", given="Eleanor", mrn="MRN40417720") -> None:
    resource = {"resourceType": "Patient", "id": "p1", "name": [{"family": family, "given": [given]}],
                "identifier": [{"type": {"coding": [{"code": "MR"}]}, "value": mrn},
                               {"type": {"coding": [{"code": "SS"}]}, "value": "999-41-0172"}],
                "telecom": [{"system": "phone", "value": "(413) 555-0199"}],
                "address": [{"line": ["77 Birchwood Lane"], "city": "Millbrook", "postalCode": "01240"}],
                "birthDate": "1951-07-14"}
    write("bronze.fhir_resources", [dict(resource_type="Patient", resource_id="p1",
                                         resource=json.dumps(resource))])


def test_phi_guard_passes_clean_text_and_names_table_and_column_of_a_leak(home):
    bronze_patient(home)
    patients(home)
    clean = privacy.scrub_text("Eleanor Whitfield, DOB 07/14/1951, lives in Millbrook. "
                               "Call (413) 555-0199.", ["Eleanor", "Whitfield", "Millbrook"], 9)
    write("silver.document", [dict(document_id="d1", person_key=PEOPLE[0], text=clean)])
    leaks, stats = phi.scan(chunks=False)
    assert leaks == [] and stats["identifier_values"] >= 8 and stats["columns_scanned"] >= 2

    # A note left unscrubbed: a name, the birth date in US spelling, the phone.
    write("silver.document", [dict(document_id="d1", person_key=PEOPLE[0], text=clean),
                              dict(document_id="d2", person_key=PEOPLE[1],
                                   text="Seen ELEANOR today; born 07/14/1951; tel 413.555.0199")])
    leaks, _ = phi.scan(chunks=False)
    where = {(l.table, l.column, l.kind): l.rows for l in leaks}
    assert where == {("silver.document", "text", "name"): 1,
                     ("silver.document", "text", "birth_date"): 1,
                     ("silver.document", "text", "telecom"): 1}
    message = "; ".join(map(str, leaks))
    for value in ["Eleanor", "ELEANOR", "1951", "555"]:
        assert value not in message


def test_phi_guard_matches_whole_words_only(home):
    bronze_patient(home, family="Lind", given="Anna")
    # Only as whole words: "Lindane" and "annals" are not the patient.
    write("silver.document", [dict(document_id="d1", text="Lindane exposure; see annals.")])
    assert phi.scan(chunks=False)[0] == []
    write("silver.document", [dict(document_id="d1", text="Seen: anna lind.")])
    assert [(l.kind, l.rows) for l in phi.scan(chunks=False)[0]] == [("name", 1)]


def test_phi_guard_matches_short_name_parts_only_in_their_own_persons_rows(home):
    # A family name "Day" must not flag every "twice a day" in other people's notes, but
    # it is a leak in the patient's own note.
    bronze_patient(home, family="Day", given="Rosalind")
    own, other = privacy.person_key("MRN40417720"), privacy.person_key("MRN-someone-else")
    write("silver.document", [dict(document_id="d1", person_key=other, text="Metformin twice a day."),
                              dict(document_id="d2", person_key=None, text="Follow up in a day.")])
    assert phi.scan(chunks=False)[0] == []
    write("silver.document", [dict(document_id="d1", person_key=other, text="Rosalind reports no pain.")])
    assert [(l.kind, l.rows) for l in phi.scan(chunks=False)[0]] == [("name", 1)]
    write("silver.document", [dict(document_id="d1", person_key=other, text="Metformin twice a day."),
                              dict(document_id="d2", person_key=own, text="Seen Ms. Day today.")])
    assert [(l.table, l.kind, l.rows) for l in phi.scan(chunks=False)[0]] == [("silver.document", "name", 1)]


def test_auto_engine_goes_to_duckdb_only_when_large_and_expressible(home, monkeypatch):
    import quality.gx_runner as runner

    patients(home)
    write("silver.document", documents())
    monkeypatch.setattr(runner, "PANDAS_MAX_ROWS", 2)
    assert run_suite("silver.document", engine="auto", docs=False, record=False).engine == "duckdb"
    odd = [Expectation("ExpectColumnValueLengthsToBeBetween", {"column": "text", "min_value": 1}, "warn")]
    r = run_suite("silver.document", engine="auto", docs=False, record=False, suite=odd)
    assert r.engine == "pandas" and r.success


def test_data_docs_compile_their_templates_once_per_process_and_show_each_validation(home):
    from quality.gx_runner import TEMPLATES

    TEMPLATES.clear()
    patients(home)
    write("silver.document", documents())
    first = run_suite("silver.document", engine="pandas", record=False)
    compiled = dict(TEMPLATES.code)
    assert first.success and first.docs_index and len(compiled) > 10
    write("silver.document", documents(document_id=None))
    second = run_suite("silver.document", engine="pandas", record=False)
    assert not second.success
    assert TEMPLATES.code == compiled  # the second check's pages compiled nothing
    pages = sorted((home / "gx").rglob("validations/silver__document/**/*.html"),
                   key=lambda p: p.stat().st_mtime)
    assert len(pages) == 2  # one page per validation, both rendered
    assert ">Succeeded<" in pages[0].read_text().replace(" ", "").replace("\n", "")
    assert "1 unexpected values found. 25% of 4 total rows." in pages[1].read_text()


def test_data_docs_keep_each_tables_newest_validations_and_the_index_lists_those(home, monkeypatch):
    import re

    from quality import gx_runner

    monkeypatch.setattr(gx_runner, "DOCS_KEEP", 2)
    patients(home)
    write("silver.document", documents())
    for _ in range(3):
        assert run_suite("silver.document", engine="pandas", record=False).success
    write("silver.document", documents(document_id=None))
    assert not run_suite("silver.document", engine="pandas", record=False).success

    uncommitted = home / "gx" / "gx" / "uncommitted"
    pages = sorted(uncommitted.glob("data_docs/local_site/validations/silver__document/*/*/*.html"))
    results = sorted(uncommitted.glob("validations/silver__document/*/*/*.json"))
    assert len(pages) == 2 and len(results) == 2
    assert [p.parent.name for p in pages] == [r.parent.name for r in results]
    assert "1 unexpected values found" in pages[-1].read_text()  # the newest: the failure
    index = gx_runner.data_docs_index().read_text()
    linked = set(re.findall(r"validations/silver__document/[^/]+/(\d{8}T\d{6}\.\d+Z)/", index))
    assert linked == {p.parent.name for p in pages}
