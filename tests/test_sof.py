"""medlake.sof beyond the conformance suite: what silver models rely on."""
import json

import pytest

from medlake.sof import ViewDefinitionError, compile_view, load_view, run_view
from medlake.sof.conformance import load_resources

PATIENTS = [
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "A", "given": ["x", "y"]}],
     "managingOrganization": {"reference": "https://h.example/fhir/Organization/o1/_history/3"}},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "B"}, {"family": "C"}]},
    {"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}},
]


@pytest.fixture
def con():
    con = load_resources(PATIENTS)
    con.execute("ALTER TABLE fhir_resources ADD COLUMN batch_id VARCHAR DEFAULT 'b1'")
    return con


def test_carry_passes_source_columns_through(con):
    view = {"resource": "Patient", "select": [{"forEach": "name", "column": [
        {"name": "family", "path": "family", "type": "string"}]}]}
    rows = run_view(con, view, "fhir_resources", carry=["batch_id"]).to_pylist()
    assert sorted((r["batch_id"], r["family"]) for r in rows) == [
        ("b1", "A"), ("b1", "B"), ("b1", "C")]
    with pytest.raises(ViewDefinitionError, match="clashes"):
        compile_view(view, carry=["family"])


def test_compiled_sql_nests_as_a_subquery(con):
    """dbt models wrap the statement: it must work inside FROM (...), repeat's CTE too."""
    view = {"resource": "Patient", "select": [
        {"column": [{"name": "id", "path": "getResourceKey()", "type": "string"},
                    {"name": "org", "path": "managingOrganization.getReferenceKey(Organization)",
                     "type": "string"}]},
        {"repeat": ["name"], "column": [{"name": "family", "path": "family"}]}]}
    sql = compile_view(view, "fhir_resources")
    rows = con.sql(f"SELECT id, org, count(*) AS n FROM ({sql}) GROUP BY ALL ORDER BY id").fetchall()
    assert rows == [("p1", "o1", 1), ("p2", None, 2)]


def test_several_values_in_a_single_column_fail_clearly(con):
    view = {"resource": "Patient", "name": "names",
            "select": [{"column": [{"name": "family", "path": "name.family"}]}]}
    with pytest.raises(ViewDefinitionError, match="'names'.*family.*more than one"):
        run_view(con, view, "fhir_resources")
    view["select"][0]["column"][0]["path"] = "name.family.first()"
    assert sorted(r["family"] for r in run_view(con, view, "fhir_resources").to_pylist()) == \
        ["A", "B"]


def test_unsupported_shapes_are_named(con):
    nested_repeat = {"resource": "Patient", "select": [{"forEach": "name", "select": [
        {"repeat": ["given"], "column": [{"name": "g", "path": "$this"}]}]}]}
    with pytest.raises(ViewDefinitionError, match="repeat is supported at the resource level"):
        compile_view(nested_repeat)
    with pytest.raises(ViewDefinitionError, match="only one of forEach"):
        compile_view({"resource": "Patient", "select": [
            {"forEach": "name", "forEachOrNull": "name", "column": [{"name": "a", "path": "id"}]}]})
    with pytest.raises(ViewDefinitionError, match="used twice"):
        compile_view({"resource": "Patient", "select": [
            {"column": [{"name": "a", "path": "id"}]}, {"column": [{"name": "a", "path": "id"}]}]})


def test_load_view(tmp_path):
    path = tmp_path / "v.json"
    path.write_text(json.dumps({"resource": "Patient", "select": [
        {"column": [{"name": "id", "path": "id"}]}]}))
    assert load_view(path)["resource"] == "Patient"
    path.write_text("{not json")
    with pytest.raises(ViewDefinitionError, match="not valid JSON"):
        load_view(path)


def test_fhirpath_beyond_the_suite(con):
    view = {"resource": "Patient", "select": [{"column": [
        {"name": "id", "path": "id"},
        {"name": "n", "path": "name.count()", "type": "integer"},
        {"name": "initials", "path": "name.given.join('') & '!'"},
        {"name": "has_x", "path": "'x' in name.given", "type": "boolean"},
        {"name": "upper", "path": "name.first().family.upper()"},
        {"name": "two", "path": "iif(name.count() > 1, 'many', 'one')"},
        {"name": "me", "path": "%resource.id"},
    ]}]}
    rows = {r["id"]: r for r in run_view(con, view, "fhir_resources").to_pylist()}
    assert rows["p1"] == {"id": "p1", "n": 1, "initials": "xy!", "has_x": True,
                          "upper": "A", "two": "one", "me": "p1"}
    assert rows["p2"]["n"] == 2 and rows["p2"]["two"] == "many" and rows["p2"]["has_x"] is False
