"""SQL on FHIR v2 ViewDefinitions, compiled to DuckDB SQL.

    from medlake.sof import compile_view, load_view
    sql = compile_view(load_view("dbt_project/views/patient.json"))
    con.sql(sql)     # over bronze.fhir_resources (resource_type, resource_id, resource)

The compiled statement is one vectorized SELECT (JSON functions, list lambdas,
UNNEST, a recursive CTE per `repeat`); no Python runs per resource.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from medlake.sof.errors import ViewDefinitionError, raised_by_view
from medlake.sof.view import ViewCompiler

__all__ = ["ViewDefinitionError", "compile_view", "load_view", "run_view"]


def compile_view(view: dict, source: str = "bronze.fhir_resources", *,
                 carry: Sequence[str] = ()) -> str:
    """One DuckDB SELECT giving the rows of `view` over `source`, a relation with
    columns `resource_type`, `resource_id` and `resource` (the resource's JSON text).

    `carry` names further columns of `source` (e.g. `batch_id`, `source_sha256`) to
    pass through, first, on every row a resource produces. Raises ViewDefinitionError
    for an invalid view; the SQL itself fails with a message starting
    "ViewDefinitionError: " when the data breaks the view's rules (several values in a
    column that is not `collection: true`, a `where` path that is not boolean);
    `run_view` turns that into a ViewDefinitionError.
    """
    return ViewCompiler(view).compile(source, tuple(carry))


def load_view(path: str | Path) -> dict:
    """Read a ViewDefinition JSON file."""
    try:
        view = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ViewDefinitionError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(view, dict):
        raise ViewDefinitionError(f"{path} must hold one JSON object (a ViewDefinition)")
    return view


def run_view(con, view: dict, source: str = "bronze.fhir_resources", *,
             carry: Sequence[str] = ()):
    """Run `view` on the DuckDB connection `con`; returns a pyarrow Table."""
    import duckdb

    sql = compile_view(view, source, carry=carry)
    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.Error as e:
        raise (raised_by_view(e, view) or e) from e
