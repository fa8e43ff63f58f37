"""Column-level lineage of a dbt model from its compiled SQL, with sqlglot.

dagster-dbt's `fetch_column_metadata` derives lineage only when every parent is a
relation; the models that join through the ephemeral identity crosswalk
(`int_patient_identity`) have a parent without one, and get none. dbt inlines an
ephemeral model into the compiled SQL as a CTE, so the lineage can still be traced to
the real tables, which is what this does (schemas come from the Delta tables).
"""
from __future__ import annotations

from pathlib import Path

from medlake import lake

CATALOG = "warehouse"  # the DuckDB database dbt compiles relation names against


def column_lineage(sql: str, upstream: list[str]) -> dict[str, list[tuple[str, str]]]:
    """`{output_column: [(schema.table, column), ...]}` for the lake tables in `upstream`."""
    from sqlglot import parse_one
    from sqlglot.lineage import lineage

    schema: dict = {CATALOG: {}}
    for table in upstream:
        dt = lake.open_table(table)
        if dt is None:
            continue
        layer, name = table.split(".")
        schema[CATALOG].setdefault(layer, {})[name] = {
            f.name: "VARCHAR" for f in lake.arrow_schema(dt)}  # types do not change lineage
    out: dict[str, list[tuple[str, str]]] = {}
    for column in parse_one(sql, dialect="duckdb").named_selects:
        try:
            out[column] = _sources(lineage(column, sql, schema=schema, dialect="duckdb"), upstream)
        except Exception:  # a construct sqlglot cannot trace: no lineage, not a failure
            continue
    return out


def _sources(root, upstream: list[str]) -> list[tuple[str, str]]:
    """The leaves of one column's lineage graph that are columns of an upstream table."""
    from sqlglot import exp

    deps = set()
    for node in root.walk():
        if node.downstream:
            continue
        table = node.expression.find(exp.Table)
        column = node.name.split(".")[-1]
        if table is not None and f"{table.db}.{table.name}" in upstream and column != "*":
            deps.add((f"{table.db}.{table.name}", column))
    return sorted(deps)


def lineage_metadata(compiled: Path, upstream: list[str]) -> dict:
    """The lineage as Dagster's `dagster/column_lineage` metadata (empty if not compiled)."""
    import dagster as dg

    if not compiled.exists():
        return {}
    deps = column_lineage(compiled.read_text(), upstream)
    return {"dagster/column_lineage": dg.TableColumnLineage(deps_by_column={
        column: [dg.TableColumnDep(asset_key=dg.AssetKey(t.split(".")), column_name=c)
                 for t, c in pairs]
        for column, pairs in deps.items()})}
