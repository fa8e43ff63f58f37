"""SQL on FHIR views: compiled to one DuckDB query vs evaluated per resource in Python.

Both sides run the silver ViewDefinitions (dbt_project/views/*.json) over the same
bronze-shaped resources from `medlake generate`, at two sizes. The Python side is the
straightforward way: parse each resource's JSON, walk the view, evaluate every path
with fhirpathpy (paths compiled once). The DuckDB side runs `compile_view`'s SQL. Both
include JSON parsing; the row multisets are compared, so the benchmark is also a
cross-check of the compiler against an independent FHIRPath engine.

Run: `make bench` (or `.venv/bin/python bench/sof.py [patients ...]`, default 100 1000).
"""
from __future__ import annotations

import re
import sys
import tempfile
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
from fhirpathpy import compile as fp_compile
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from medlake.sof import load_view, run_view

ROOT = Path(__file__).resolve().parents[1]
MODEL = models["r4"]
_REF = re.compile(r"([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[^/]+)?$")


def _data(x):
    return x.data if isinstance(x, ResourceNode) else x


def _reference_key(inputs, type_=None):
    out = []
    for x in inputs:
        m = _REF.search(str((_data(x) or {}).get("reference", "")))
        if m and (type_ is None or m.group(1) == type_.name):
            out.append(m.group(2))
    return out


OPTIONS = {"userInvocationTable": {
    "getResourceKey": {"fn": lambda inputs: [_data(x).get("id") for x in inputs],
                       "arity": {0: []}},
    "getReferenceKey": {"fn": _reference_key, "arity": {0: [], 1: ["TypeSpecifier"]}},
}}


class PythonView:
    """A ViewDefinition evaluated one resource at a time with fhirpathpy."""

    def __init__(self, view: dict):
        self.view = view
        self.constants = {c["name"]: next(v for k, v in c.items() if k.startswith("value"))
                          for c in view.get("constant", [])}
        self.paths: dict[tuple[str, bool], object] = {}

    def eval(self, path: str, node, idx: int, raw: bool = False) -> list:
        fn = self.paths.get((path, raw))
        if fn is None:
            options = dict(OPTIONS, returnRawData=True) if raw else OPTIONS
            fn = self.paths[(path, raw)] = fp_compile(path, MODEL, options)
        return fn(node, dict(self.constants, rowIndex=idx))

    def rows(self, resource: dict) -> list[dict]:
        if not all(self.eval(w["path"], resource, 0) == [True]
                   for w in self.view.get("where", [])):
            return []
        return self.body({"select": self.view["select"]}, resource, 0)

    def select(self, node: dict, item, idx: int) -> list[dict]:
        for key in ("forEach", "forEachOrNull"):
            if key in node:
                items = [] if item is None else self.eval(node[key], item, idx, raw=True)
                if not items and key == "forEachOrNull":
                    items = [None]
                return [r for i, it in enumerate(items) for r in self.body(node, it, i)]
        if "repeat" in node:
            items = []

            def walk(parent):   # depth first, in document order
                for child in (c for p in node["repeat"]
                              for c in self.eval(p, parent, 0, raw=True)):
                    items.append(child)
                    walk(child)
            walk(item)
            return [r for i, it in enumerate(items) for r in self.body(node, it, i)]
        return self.body(node, item, idx)

    def body(self, node: dict, item, idx: int) -> list[dict]:
        parts = []
        if "column" in node:
            parts.append([{c["name"]: self.value(c, item, idx) for c in node["column"]}])
        parts += [self.select(s, item, idx) for s in node.get("select", [])]
        if "unionAll" in node:
            parts.append([r for b in node["unionAll"] for r in self.select(b, item, idx)])
        rows = [{}]
        for part in parts:
            rows = [{**a, **b} for a in rows for b in part]
        return rows

    def value(self, col: dict, item, idx: int):
        values = [] if item is None else [_plain(v, col.get("type"))
                                          for v in self.eval(col["path"], item, idx)]
        if col.get("collection"):
            return values
        if len(values) > 1:
            raise ValueError(f"column {col['name']} got several values")
        return values[0] if values else None


def _plain(v, fhir_type):
    if isinstance(v, bool) or v is None:
        return v
    if fhir_type == "decimal" or isinstance(v, (float, Decimal)):
        return float(v)
    if fhir_type in ("integer", "positiveInt", "unsignedInt") or isinstance(v, int):
        return int(v)
    return v if isinstance(v, (str, dict, list)) else str(v)


def _multiset(rows: list[dict]) -> Counter:
    def cell(v):
        if isinstance(v, float):
            return round(v, 9)
        return tuple(cell(x) for x in v) if isinstance(v, list) else v
    return Counter(tuple(sorted((k, cell(v)) for k, v in r.items())) for r in rows)


def load_bronze(patients: int) -> list[dict]:
    """Generated patients → bronze rows, parsed by the bronze ingest's own parser."""
    from assets.ehr.fhir import parse
    from medlake.generate import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp) / "landing", patients=patients, seed=1)
        rows = []
        for f in sorted((Path(tmp) / "landing" / "fhir").glob("*.json")):
            rows += parse(f).rows["bronze.fhir_resources"].table().to_pylist()
    return [{k: r[k] for k in ("resource_type", "resource_id", "resource")} for r in rows]


def one_size(patients: int, views: dict[str, dict]) -> dict:
    bronze = load_bronze(patients)
    con = duckdb.connect()
    con.register("staged", pa.Table.from_pylist(bronze))
    con.execute("CREATE TABLE fhir_resources AS SELECT * FROM staged")
    by_type: dict[str, list[str]] = {}
    for r in bronze:
        by_type.setdefault(r["resource_type"], []).append(r["resource"])
    out = dict(patients=patients, resources=len(bronze), rows=0, duck_s=0.0, py_s=0.0,
               duck_cpu=0.0, py_cpu=0.0, mismatched=[])
    for name, view in views.items():
        t, c = time.perf_counter(), time.process_time()
        table = run_view(con, view, "fhir_resources")       # an Arrow table, as Delta takes it
        out["duck_s"] += time.perf_counter() - t
        out["duck_cpu"] += time.process_time() - c
        duck = table.to_pylist()
        t, c = time.perf_counter(), time.process_time()
        pv = PythonView(view)
        py = [row for text in by_type.get(view["resource"], [])
              for row in pv.rows(orjson.loads(text))]
        out["py_s"] += time.perf_counter() - t
        out["py_cpu"] += time.process_time() - c
        out["rows"] += len(duck)
        if _multiset(duck) != _multiset(py):
            out["mismatched"].append(name)
    return out


def main(sizes: list[int]) -> None:
    paths = sorted((ROOT / "dbt_project" / "views").glob("*.json"))
    views = {p.stem: load_view(p) for p in paths}
    print(f"{len(views)} silver ViewDefinitions: {', '.join(views)}")
    print("wall-clock seconds; CPU seconds (all threads, steadier on a shared machine) in ()")
    print(f"{'patients':>8} {'resources':>9} {'rows':>7} {'DuckDB s':>14} {'DuckDB rows/s':>14} "
          f"{'Python s':>15} {'Python rows/s':>14} {'speed-up':>9}  rows agree")
    results = []
    for n in sizes:
        r = one_size(n, views)
        results.append(r)
        agree = "yes" if not r["mismatched"] else "NO: " + ", ".join(r["mismatched"])
        print(f"{n:>8} {r['resources']:>9} {r['rows']:>7} "
              f"{r['duck_s']:>6.2f} ({r['duck_cpu']:>5.2f}) {r['rows'] / r['duck_s']:>14,.0f} "
              f"{r['py_s']:>7.2f} ({r['py_cpu']:>5.1f}) {r['rows'] / r['py_s']:>14,.0f} "
              f"{r['py_s'] / r['duck_s']:>8.1f}x  {agree}", flush=True)
    if len(results) > 1:
        a, b = results[0], results[-1]
        print(f"\n{b['rows'] / a['rows']:.1f}x the rows took {b['duck_s'] / a['duck_s']:.1f}x "
              f"the time ({b['duck_cpu'] / a['duck_cpu']:.1f}x the CPU) in DuckDB and "
              f"{b['py_s'] / a['py_s']:.1f}x ({b['py_cpu'] / a['py_cpu']:.1f}x) in Python "
              f"(linear growth would be {b['rows'] / a['rows']:.1f}x).")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100, 1000])
