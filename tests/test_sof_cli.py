"""`medlake sof run` on a fixture of the SQL on FHIR suite: CSV, NDJSON and Parquet."""
import csv
import gzip
import json

import pyarrow.parquet as pq
import pytest

from conftest import SHARED
from medlake.cli import main

SUITE = SHARED / "data" / "sql-on-fhir-tests"


@pytest.fixture
def fixture(tmp_path):
    """foreach.json's resources as gzipped NDJSON, and its forEachOrNull view."""
    doc = json.loads((SUITE / "foreach.json").read_text())
    case = next(t for t in doc["tests"] if t["title"] == "forEachOrNull: basic")
    resources = tmp_path / "Patient.ndjson.gz"
    resources.write_bytes(gzip.compress(
        "".join(json.dumps(r) + "\n" for r in doc["resources"]).encode()))
    view = tmp_path / "view.json"
    view.write_text(json.dumps(case["view"]))
    return view, resources, case["expect"]


def _key(rows):
    return sorted((r["id"], r["family"]) for r in rows)


def test_csv_to_stdout(fixture, capsys):
    view, resources, expect = fixture
    assert main(["sof", "run", str(view), str(resources)]) == 0
    out = capsys.readouterr()
    rows = list(csv.DictReader(out.out.splitlines()))
    assert _key({"id": r["id"], "family": r["family"] or None} for r in rows) == _key(expect)
    assert f"{len(expect)} rows" in out.err


def test_ndjson_and_parquet_files(fixture, tmp_path):
    view, resources, expect = fixture
    nd, pa_file = tmp_path / "out.ndjson", tmp_path / "out.parquet"
    assert main(["sof", "run", str(view), str(resources), "--format", "ndjson",
                 "-o", str(nd)]) == 0
    assert _key(json.loads(line) for line in nd.read_text().splitlines()) == _key(expect)
    assert main(["sof", "run", str(view), str(resources), "--format", "parquet",
                 "-o", str(pa_file)]) == 0
    table = pq.read_table(pa_file)
    assert table.column_names == ["id", "family"]
    assert _key(table.to_pylist()) == _key(expect)


def test_a_bundle_is_unpacked(fixture, tmp_path, capsys):
    view, resources, expect = fixture
    bundle = tmp_path / "bundle.json"
    entries = [{"resource": json.loads(line)}
               for line in gzip.decompress(resources.read_bytes()).decode().splitlines()]
    bundle.write_text(json.dumps({"resourceType": "Bundle", "type": "collection",
                                  "entry": entries}))
    assert main(["sof", "run", str(view), str(bundle), "--format", "ndjson"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert _key(rows) == _key(expect)


def test_errors_say_what_is_wrong(fixture, tmp_path, capsys):
    view, resources, _ = fixture
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"select": [{"column": [{"name": "id", "path": "id"}]}]}))
    assert main(["sof", "run", str(bad), str(resources)]) == 2
    assert "resource" in capsys.readouterr().err
    # Several family names in a column that is not a collection: a runtime error.
    bad.write_text(json.dumps({"resource": "Patient", "select": [
        {"column": [{"name": "family", "path": "name.family"}]}]}))
    assert main(["sof", "run", str(bad), str(resources)]) == 2
    assert "more than one" in capsys.readouterr().err
    assert main(["sof", "run", str(view), str(tmp_path / "missing.ndjson")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["sof", "run", str(view), str(resources), "--format", "parquet"]) == 2
