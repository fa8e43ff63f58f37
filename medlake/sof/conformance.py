"""Run the SQL on FHIR v2 conformance suite (tests/*.json of FHIR/sql-on-fhir-v2) and
write its standard test report.

Each suite file holds `resources` and `tests`; a test has a `view` and either `expect`
(rows, compared as a multiset) or `expectError`. Resources are loaded into an in-memory
DuckDB table of the bronze shape and the compiled view runs on it.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import duckdb

from medlake.sof import ViewDefinitionError, run_view

TABLE = "fhir_resources"


@dataclass(frozen=True, eq=False)
class Case:
    file: str
    name: str
    view: dict
    expect: list | None
    expect_columns: list | None
    expect_error: bool
    experimental: bool

    @property
    def id(self) -> str:
        return f"{self.file}:{self.name}"


def load_suite(folder: Path) -> tuple[list[Case], dict[str, list[dict]]]:
    """Every test case of the suite in `folder`, and each file's resources."""
    cases, resources = [], {}
    for path in sorted(Path(folder).glob("*.json")):
        if path.name.endswith("schema.json"):
            continue
        doc = json.loads(path.read_text())
        resources[path.name] = doc["resources"]
        file_tags = set(doc.get("tags", []))
        for t in doc["tests"]:
            tags = file_tags | set(t.get("tags", []))
            cases.append(Case(path.name, t["title"], t["view"], t.get("expect"),
                              t.get("expectColumns"), "expectError" in t,
                              "experimental" in tags))
    return cases, resources


def load_resources(resources: list[dict]) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding `resources` as table fhir_resources (bronze shape)."""
    con = duckdb.connect()
    con.execute(f"CREATE TABLE {TABLE} (resource_type VARCHAR, resource_id VARCHAR, "
                f"resource VARCHAR)")
    con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?)",
                    [(r.get("resourceType"), r.get("id"), json.dumps(r)) for r in resources])
    return con


def _value(v):
    """A comparable form of a cell: numbers by value (5 == 5.0), lists item by item."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return ("number", float(v))
    if isinstance(v, list):
        return tuple(_value(x) for x in v)
    return ("other", repr(v))


def _rows(rows: list[dict]) -> Counter:
    return Counter(tuple(sorted((k, _value(v)) for k, v in r.items())) for r in rows)


def run_case(case: Case, con: duckdb.DuckDBPyConnection) -> str | None:
    """None when the case passes, else why it failed."""
    try:
        table = run_view(con, case.view, TABLE)
    except ViewDefinitionError as e:
        return None if case.expect_error else f"unexpected error: {e}"
    except duckdb.Error as e:
        return f"the compiled SQL failed: {e}"
    if case.expect_error:
        return f"expected an error, got {table.num_rows} rows"
    got = table.to_pylist()
    if case.expect_columns is not None and table.column_names != case.expect_columns:
        return f"columns {table.column_names}, expected {case.expect_columns}"
    if case.expect and set(table.column_names) != set(case.expect[0]):
        return f"columns {sorted(table.column_names)}, expected {sorted(case.expect[0])}"
    if _rows(got) != _rows(case.expect or []):
        return f"rows {got}, expected {case.expect}"
    return None


def report(results: dict[Case, str | None]) -> dict:
    """The suite's test-report format: {file: {"tests": [{name, result}]}}."""
    out: dict[str, dict] = {}
    for case, error in results.items():
        result = {"passed": error is None, "details": {"experimental": case.experimental}}
        if error is not None:
            result["error"] = error
        out.setdefault(case.file, {"tests": []})["tests"].append(
            {"name": case.name, "result": result})
    return out


def counts(results: dict[Case, str | None]) -> dict[str, tuple[int, int]]:
    """(passed, total) for the required and the experimental cases."""
    out = {}
    for label, experimental in (("required", False), ("experimental", True)):
        mine = [e for c, e in results.items() if c.experimental == experimental]
        out[label] = (sum(e is None for e in mine), len(mine))
    return out
