"""EHR depth: FHIR Bundles of every type into bronze, the SQL-on-FHIR views behind silver,
the OMOP gold layer and its concept seed, on real Delta, DuckDB and dbt."""
import csv
import json
import re
import subprocess
from pathlib import Path

import duckdb
import orjson
import pytest

from assets.ehr.fhir import FHIR
from medlake import lake
from medlake.ingest import ingest
from medlake.sof import load_view, run_view

ROOT = Path(__file__).resolve().parents[1]
VIEWS = ROOT / "dbt_project" / "views"
SEED = ROOT / "dbt_project" / "seeds" / "concept_map.csv"
LAB_OR_VITAL = {"laboratory", "vital-signs"}


def _bundle(kind: str) -> dict:
    """A small Bundle of `kind` with urn:uuid references, as each kind carries them."""
    patient = {"resourceType": "Patient", "id": f"p-{kind}"}
    obs = {"resourceType": "Observation", "id": f"o-{kind}", "status": "final",
           "code": {"text": "x"}, "subject": {"reference": f"urn:uuid:p-{kind}"}}
    entries = [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in (patient, obs)]
    if kind in ("transaction", "batch"):
        for e in entries:
            e["request"] = {"method": "POST", "url": e["resource"]["resourceType"]}
    if kind == "searchset":
        for e in entries:
            e["search"] = {"mode": "match"}
        entries.append({"resource": {"resourceType": "OperationOutcome", "id": "oo-1", "issue": []},
                        "search": {"mode": "outcome"}})
    if kind == "document":
        entries.insert(0, {"fullUrl": "urn:uuid:comp-1", "resource": {
            "resourceType": "Composition", "id": "comp-1", "status": "final",
            "subject": {"reference": f"urn:uuid:p-{kind}"}, "section": [
                {"entry": [{"reference": f"urn:uuid:o-{kind}"}]}]}})
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


@pytest.mark.parametrize("kind", ["transaction", "batch", "collection", "searchset", "document"])
def test_every_bundle_type_lands_with_references_resolved(home, tmp_path, kind):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / f"{kind}.json").write_bytes(orjson.dumps(_bundle(kind)))
    s = ingest(FHIR, tmp_path / "in", "b")
    assert s.files_ingested == 1 and s.problems == 0
    rows = {r["resource_id"]: r for r in lake.read("bronze.fhir_resources").to_pylist()}
    assert {f"p-{kind}", f"o-{kind}"} <= set(rows)
    obs = json.loads(rows[f"o-{kind}"]["resource"])
    assert obs["subject"]["reference"] == f"Patient/p-{kind}"
    assert rows[f"o-{kind}"]["patient_ref"] == f"Patient/p-{kind}"
    if kind == "document":
        comp = json.loads(rows["comp-1"]["resource"])
        assert comp["section"][0]["entry"][0]["reference"] == f"Observation/o-{kind}"
        assert rows["comp-1"]["patient_ref"] == f"Patient/p-{kind}"
    if kind == "searchset":  # not a clinical resource, but kept as received
        assert rows["oo-1"]["resource_type"] == "OperationOutcome"


def test_contained_and_unknown_resources_are_kept_whole(home, tmp_path):
    med = {"resourceType": "MedicationRequest", "id": "mr1", "status": "active",
           "contained": [{"resourceType": "Medication", "id": "med1",
                          "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                               "code": "314076"}]}}],
           "medicationReference": {"reference": "#med1"},
           "subject": {"reference": "urn:uuid:p1"}}
    unknown = {"resourceType": "MadeUpResource", "id": "x1", "subject": {"reference": "urn:uuid:p1"}}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:mr1", "resource": med}, {"fullUrl": "urn:uuid:x1", "resource": unknown},
        {"request": {"method": "DELETE", "url": "Patient/old"}}]}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.json").write_bytes(orjson.dumps(bundle))
    s = ingest(FHIR, tmp_path / "in", "b")
    rows = {(r["resource_type"], r["resource_id"]): r for r in lake.read("bronze.fhir_resources").to_pylist()}
    # The contained Medication stays inside its parent: no row of its own.
    assert set(rows) == {("Patient", "p1"), ("MedicationRequest", "mr1"), ("MadeUpResource", "x1")}
    kept = json.loads(rows[("MedicationRequest", "mr1")]["resource"])
    assert kept["contained"][0]["id"] == "med1" and kept["medicationReference"]["reference"] == "#med1"
    assert rows[("MadeUpResource", "x1")]["patient_ref"] == "Patient/p1"
    # A DELETE entry has no resource: quarantined with a sentence, the rest landed.
    assert s.problems == 1
    q = lake.read("bronze.quarantine").to_pylist()
    assert q[0]["source_uri"].endswith("#entry=3") and "DELETE without a resource" in q[0]["error"]


def _run(view: str, resources: list[dict]):
    con = duckdb.connect()
    con.execute("CREATE TABLE r (resource_type VARCHAR, resource_id VARCHAR, resource VARCHAR)")
    con.executemany("INSERT INTO r VALUES (?, ?, ?)",
                    [(x["resourceType"], x["id"], json.dumps(x)) for x in resources])
    rows = run_view(con, load_view(VIEWS / f"{view}.json"), "r").to_pylist()
    return sorted(rows, key=lambda x: (x["id"], str(x.get("code_code"))))


def test_observation_views_split_value_x_and_components():
    q = lambda v, u: {"value": v, "unit": u, "system": "http://unitsofmeasure.org", "code": u}  # noqa: E731
    cc = lambda c: {"coding": [{"system": "http://snomed.info/sct", "code": c, "display": c}]}  # noqa: E731
    base = {"resourceType": "Observation", "status": "final", "code": cc("x"),
            "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2020-01-01T10:00:00Z"}
    obs = [
        {**base, "id": "a", "valueQuantity": q(7.25, "%")},
        {**base, "id": "b", "valueCodeableConcept": cc("8517006")},
        {**base, "id": "c", "valueString": "lives alone"},
        {**base, "id": "d", "valueBoolean": False},
        {**base, "id": "e", "valueInteger": 3},
        {**base, "id": "f", "component": [
            {"code": cc("8480-6"), "valueQuantity": q(128, "mm[Hg]")},
            {"code": cc("8462-4"), "valueQuantity": q(82, "mm[Hg]")}]},
    ]
    rows = {r["id"]: r for r in _run("observation", obs)}
    assert len(rows) == 6  # one row per Observation, whatever its value
    assert float(rows["a"]["value_quantity"]) == 7.25 and rows["a"]["value_unit_code"] == "%"
    assert rows["b"]["value_concept_code"] == "8517006"
    assert rows["b"]["value_concept_system"] == "http://snomed.info/sct"
    assert rows["c"]["value_string"] == "lives alone"
    assert rows["d"]["value_boolean"] is False
    assert rows["e"]["value_integer"] == 3
    assert rows["f"]["has_components"] is True and rows["f"]["value_quantity"] is None
    assert rows["a"]["patient_key"] == rows["f"]["patient_key"] is not None
    comps = _run("observation_component", obs)
    assert [(r["id"], r["code_code"], float(r["value_quantity"])) for r in comps] == [
        ("f", "8462-4", 82.0), ("f", "8480-6", 128.0)]


def test_every_view_compiles_and_names_its_file():
    from medlake.sof import compile_view

    names = []
    for path in sorted(VIEWS.glob("*.json")):
        view = load_view(path)
        assert view["name"] == path.stem and view["resourceType"] == "ViewDefinition"
        assert "SELECT" in compile_view(view).upper()
        names.append(path.stem)
    assert {"patient", "encounter", "condition", "observation", "medication_request",
            "procedure", "immunization", "allergy_intolerance", "diagnostic_report",
            "imaging_study_fhir", "document"} <= set(names)


def _generated_codes() -> set[tuple[str, str]]:
    from medlake.generate import clinical as cl

    vocab = {cl.SNOMED: "SNOMED", cl.LOINC: "LOINC", cl.RXNORM: "RxNorm", cl.CVX: "CVX"}
    found = set()

    def walk(o, depth=0):
        if depth > 5 or isinstance(o, type):
            return
        if isinstance(o, cl.Code):
            if o.system in vocab:
                found.add((vocab[o.system], o.code))
        elif isinstance(o, dict):
            for v in o.values():
                walk(v, depth + 1)
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v, depth + 1)
        elif hasattr(o, "__dataclass_fields__"):
            for f in o.__dataclass_fields__:
                walk(getattr(o, f), depth + 1)

    for name, value in vars(cl).items():
        if not name.startswith("_"):
            walk(value)
    return found


def test_concept_seed_lists_every_generated_code_once_and_documents_verification():
    with open(SEED, newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [(r["vocabulary_id"], r["concept_code"]) for r in rows]
    assert len(keys) == len(set(keys))
    generated = _generated_codes()
    assert len(generated) > 50
    assert generated - set(keys) == set()
    for r in rows:
        # Only verified rows carry a concept id; the others are 0 until checked in Athena.
        assert (int(r["concept_id"]) > 0) == (r["verified"] == "yes"), r
        assert r["domain_id"] and r["concept_name"]


def _synthea_expectations(src: Path) -> dict[str, int]:
    """What silver and gold must hold, counted from the bundles with plain json."""
    resources = {}
    for f in src.glob("*.json"):
        for e in json.loads(f.read_text())["entry"]:
            r = e["resource"]
            resources[(r["resourceType"], r["id"])] = r
    by_type: dict[str, list[dict]] = {}
    for (kind, _), r in resources.items():
        by_type.setdefault(kind, []).append(r)
    n = lambda kind: len(by_type.get(kind, []))  # noqa: E731

    def category(o):
        return ((o.get("category") or [{}])[0].get("coding") or [{}])[0].get("code")

    obs = by_type["Observation"]
    components = sum(len(o.get("component", [])) for o in obs)
    measurement = (sum(1 for o in obs if category(o) in LAB_OR_VITAL and not o.get("component"))
                   + sum(len(o.get("component", [])) for o in obs if category(o) in LAB_OR_VITAL))
    reports_with_text = sum(1 for r in by_type.get("DiagnosticReport", []) if r.get("presentedForm"))
    return {
        "silver.patient": n("Patient"), "silver.encounter": n("Encounter"),
        "silver.condition": n("Condition"), "silver.observation": n("Observation"),
        "silver.observation_component": components,
        "silver.medication_request": n("MedicationRequest"), "silver.procedure": n("Procedure"),
        "silver.immunization": n("Immunization"),
        "silver.allergy_intolerance": n("AllergyIntolerance"),
        "silver.diagnostic_report": n("DiagnosticReport"),
        "silver.imaging_study_fhir": n("ImagingStudy"),
        "silver.document": n("DocumentReference") + reports_with_text,
        "gold.person": n("Patient"), "gold.visit_occurrence": n("Encounter"),
        "gold.condition_occurrence": n("Condition"),
        "gold.drug_exposure": n("MedicationRequest") + n("Immunization"),
        "gold.measurement": measurement,
        "gold.observation": (sum(1 for o in obs if category(o) not in LAB_OR_VITAL)
                             + n("AllergyIntolerance")),
        # Synthea records each imaging exam as a Procedure too, so no study adds one.
        "gold.procedure_occurrence": n("Procedure"),
        "gold.note": n("DocumentReference") + reports_with_text,
    }


def test_synthea_bundles_fill_silver_and_omop_gold_with_matching_counts(home, shared):
    """The issue's acceptance test: the Synthea bundles ingest with nothing quarantined,
    and silver/gold row counts match the resources in the files. dbt builds the EHR models
    with their data and unit tests, as the pipeline does."""
    from orchestration.resources import DBT_DIR, dbt_executable

    src = shared / "data" / "fhir" / "synthea-bundles"
    s = ingest(FHIR, src, "synthea")
    assert s.files_quarantined == 0 and s.problems == 0
    assert lake.read("bronze.quarantine").num_rows == 0
    models = ["gold_person", "gold_visit_occurrence", "gold_condition_occurrence",
              "gold_drug_exposure", "gold_measurement", "gold_observation",
              "gold_procedure_occurrence", "gold_note", "silver_diagnostic_report",
              "silver_imaging_study_fhir"]
    out = subprocess.run(
        # cautious: no test of a model left out (e.g. imaging's relationships to patient)
        [dbt_executable(), "build", "--select", *[f"+{m}" for m in models],
         "--indirect-selection", "cautious", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(home / "dbt_target"), "--log-path", str(home / "dbt_logs")],
        capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-4000:]
    assert "ERROR=0" in out.stdout and " unit_test " in out.stdout
    expected = _synthea_expectations(src)
    got = {t: lake.read(t, "SELECT count(*) FROM t").column(0)[0].as_py() for t in expected}
    assert got == expected
    assert expected["silver.observation_component"] > 0 and expected["gold.drug_exposure"] > 0
    # Rows keep their provenance, and OMOP ids are integers derived from person_key.
    person = lake.read("gold.person", "SELECT person_id, person_key, source_sha256 FROM t").to_pylist()
    assert all(isinstance(p["person_id"], int) and len(p["source_sha256"]) == 64 for p in person)
    from assets.ehr.omop import unmapped

    conditions = unmapped("gold.condition_occurrence")
    assert conditions["rows"] == expected["gold.condition_occurrence"]
    assert 0 < conditions["share"] < 1  # some Synthea codes are in the seed, many are not
    assert conditions["unknown_codes"]  # ...and the check names them


def test_pipeline_builds_every_ehr_table_without_identifiers(demo):
    """On the session's demo lake (the whole pipeline, bad files included): each silver
    table has one row per landed resource of its type, and no identifier value from the
    landing files appears in any EHR silver or OMOP gold table."""
    from tests.test_e2e import _phi_values, landing_resources

    resources = landing_resources(demo)
    per_type = {}
    for r in resources:
        per_type[r["resourceType"]] = per_type.get(r["resourceType"], 0) + 1
    for table, kind in [("silver.encounter", "Encounter"), ("silver.condition", "Condition"),
                        ("silver.observation", "Observation"), ("silver.procedure", "Procedure"),
                        ("silver.medication_request", "MedicationRequest"),
                        ("silver.immunization", "Immunization"),
                        ("silver.allergy_intolerance", "AllergyIntolerance"),
                        ("silver.diagnostic_report", "DiagnosticReport"),
                        ("silver.imaging_study_fhir", "ImagingStudy"),
                        ("gold.visit_occurrence", "Encounter"), ("gold.person", "Patient")]:
        assert lake.read(table, "SELECT count(*) FROM t").column(0)[0].as_py() == per_type.get(kind, 0), table
    # Imaging reports link to their study by the same derived key the DICOM side uses.
    linked = lake.read("silver.diagnostic_report", "SELECT count(*) FROM t WHERE study_uid LIKE '2.25.%'")
    assert linked.column(0)[0].as_py() == per_type["ImagingStudy"] > 0
    phi = _phi_values(demo)
    for table in lake.list_tables("silver") + lake.list_tables("gold"):
        text = json.dumps(lake.read(table).to_pylist(), default=str)
        assert not [v for v in phi if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text)], table
