"""A SQL on FHIR v2 ViewDefinition → one DuckDB SELECT over bronze-shaped rows.

Each select node becomes an expression giving the node's rows for one resource: a
STRUCT (exactly one row) or a LIST of STRUCTs. Columns make one row; `forEach`,
`forEachOrNull` and `repeat` map the node's body over a collection; sibling parts are
crossed (nested list_transform) and `unionAll` concatenates lists. The statement then
UNNESTs the rows, so the whole view runs as vectorized DuckDB expressions. `repeat` at
the resource level is expanded by a recursive CTE (one per repeat node).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from medlake.sof.errors import ViewDefinitionError
from medlake.sof.paths import (EMPTY, Expr, Names, Scope, as_bool, as_coll, as_val, cast,
                               compile_path, let, sql_string)

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# FHIR type of a column → the SQL type of its values (all others: VARCHAR, so partial
# dates such as "1970-06" survive as written).
SQL_TYPES = {
    "boolean": "BOOLEAN", "integer": "BIGINT", "positiveInt": "BIGINT",
    "unsignedInt": "BIGINT", "integer64": "BIGINT", "decimal": "DOUBLE",
}

_CONSTANT_TYPES = {
    "valueBoolean": "BOOLEAN", "valueInteger": "BIGINT", "valuePositiveInt": "BIGINT",
    "valueUnsignedInt": "BIGINT", "valueInteger64": "BIGINT", "valueDecimal": "DOUBLE",
}

_SELECT_KEYS = {"column", "select", "unionAll", "forEach", "forEachOrNull", "repeat"}


@dataclass(frozen=True)
class Rows:
    sql: str                          # STRUCT when `single`, else LIST of STRUCT
    columns: list[tuple[str, str]]    # (name, SQL type), in output order
    single: bool

    def as_list(self) -> str:
        return f"[{self.sql}]" if self.single else self.sql


def _fail(message: str):
    raise ViewDefinitionError(message)


def _constants(view: dict) -> dict[str, Expr]:
    out = {}
    for c in view.get("constant") or []:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            _fail(f"constant {c!r} needs a `name`")
        values = [k for k in c if k.startswith("value")]
        if len(values) != 1:
            _fail(f"constant {c['name']!r} needs exactly one value[x], e.g. valueString")
        key = values[0]
        value = c[key]
        t = _CONSTANT_TYPES.get(key, "VARCHAR")
        if t == "BOOLEAN":
            sql = "true" if value is True else "false" if value is False else _fail(
                f"constant {c['name']!r}: {key} must be true or false")
        elif t in ("BIGINT", "DOUBLE"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                _fail(f"constant {c['name']!r}: {key} must be a number")
            sql = f"CAST({value!r} AS {t})"
        else:
            if not isinstance(value, str):
                _fail(f"constant {c['name']!r}: {key} must be a string")
            sql = sql_string(value)
        out[c["name"]] = Expr(sql, "val", t)
    return out


class ViewCompiler:
    def __init__(self, view: dict):
        if not isinstance(view, dict):
            _fail("a ViewDefinition must be a JSON object")
        resource = view.get("resource")
        if not isinstance(resource, str) or not _NAME.match(resource):
            _fail("the ViewDefinition needs `resource`: the FHIR resource type it reads, "
                  "e.g. \"Patient\"")
        if not isinstance(view.get("select"), list) or not view["select"]:
            _fail("the ViewDefinition needs a non-empty `select` list")
        self.view = view
        self.names = Names()
        self.constants = _constants(view)
        self.root = Expr("_r", "val", root=True)
        self.repeats: list[tuple[str, list[str]]] = []   # (column, repeat paths)

    def scope(self, this: Expr, idx: str) -> Scope:
        return Scope(this=this, root=self.root, idx=idx, constants=self.constants,
                     names=self.names)

    def path(self, text, this: Expr, idx: str, where: str) -> Expr:
        if not isinstance(text, str):
            _fail(f"{where}: `path` must be a FHIRPath string, got {text!r}")
        return compile_path(text, self.scope(this, idx))

    # -- select nodes ---------------------------------------------------------------
    def node(self, node, this: Expr, idx: str, top_level: bool) -> Rows:
        if not isinstance(node, dict):
            _fail(f"each select must be an object, got {node!r}")
        unknown = set(node) - _SELECT_KEYS - {"description", "extension", "id"}
        if unknown:
            _fail(f"select has unknown keys {sorted(unknown)}")
        iterators = [k for k in ("forEach", "forEachOrNull", "repeat") if k in node]
        if len(iterators) > 1:
            _fail(f"a select may have only one of forEach, forEachOrNull, repeat; "
                  f"got {iterators}")
        if not iterators:
            return self.body(node, this, idx, top_level)
        kind = iterators[0]
        if kind == "repeat":
            coll = self.repeat(node["repeat"], this, idx, top_level)
        else:
            if not isinstance(node[kind], str):
                _fail(f"{kind} must be a FHIRPath string, got {node[kind]!r}")
            coll = as_coll(self.path(node[kind], this, idx, kind), self.names).sql
        x, i = self.names.fresh("x"), self.names.fresh("i")
        body = self.body(node, Expr(x, "val"), f"CAST({i} - 1 AS BIGINT)", False)
        if kind == "forEachOrNull":
            # No items still gives one row, of empty values.
            coll = let(coll, lambda c: f"CASE WHEN len({c}) = 0 THEN [NULL::JSON] ELSE {c} END",
                       self.names)
        return Rows(f"flatten(list_transform({coll}, lambda {x}, {i}: {body.as_list()}))",
                    body.columns, single=False)

    def repeat(self, paths, this: Expr, idx: str, top_level: bool) -> str:
        if (not isinstance(paths, list) or not paths
                or not all(isinstance(p, str) for p in paths)):
            _fail(f"repeat must be a non-empty list of FHIRPath strings, got {paths!r}")
        if not top_level:
            _fail("repeat is supported at the resource level only, not inside forEach, "
                  "forEachOrNull or repeat")
        for p in paths:        # validate now, and register the root fields they read
            self.path(p, this, idx, "repeat")
        column = f"_rep{len(self.repeats) + 1}"
        self.repeats.append((column, paths))
        return f"coalesce({column}, {EMPTY})"

    def columns(self, cols, this: Expr, idx: str) -> Rows:
        if not isinstance(cols, list) or not cols:
            _fail("`column` must be a non-empty list")
        fields, out = [], []
        for col in cols:
            if not isinstance(col, dict):
                _fail(f"column {col!r} must be an object")
            name = col.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                _fail(f"column name {name!r} must start with a letter and hold only "
                      f"letters, digits and _")
            expr = self.path(col.get("path"), this, idx, f"column {name!r}")
            sql, sql_type = self.column_value(name, col, expr)
            fields.append(f"{sql_string(name)}: {sql}")
            out.append((name, sql_type))
        return Rows("{" + ", ".join(fields) + "}", out, single=True)

    def column_value(self, name: str, col: dict, e: Expr) -> tuple[str, str]:
        fhir_type = col.get("type")
        if fhir_type is not None and not isinstance(fhir_type, str):
            _fail(f"column {name!r}: type must be a string")
        t = SQL_TYPES.get(fhir_type) if fhir_type else (
            e.type if e.kind == "val" and e.type != "JSON" else "VARCHAR")
        t = t or "VARCHAR"
        collection = col.get("collection", False)
        if not isinstance(collection, bool):
            _fail(f"column {name!r}: collection must be true or false")
        if collection:
            c = as_coll(e, self.names)
            x = self.names.fresh("x")
            return (f"list_transform({c.sql}, lambda {x}: {cast(Expr(x, 'val'), t)})",
                    f"{t}[]")
        v = as_val(e, self.names, f"column {name!r} (not collection: true)")
        return f"CAST({cast(v, t)} AS {t})", t

    def body(self, node: dict, this: Expr, idx: str, top_level: bool) -> Rows:
        parts: list[Rows] = []
        if "column" in node:
            parts.append(self.columns(node["column"], this, idx))
        selects = node.get("select", [])
        if not isinstance(selects, list):
            _fail("`select` must be a list")
        parts += [self.node(s, this, idx, top_level) for s in selects]
        if "unionAll" in node:
            parts.append(self.union(node["unionAll"], this, idx, top_level))
        if not parts:
            _fail("a select needs at least one of column, select or unionAll")
        return self.cross(parts)

    def union(self, branches, this: Expr, idx: str, top_level: bool) -> Rows:
        if not isinstance(branches, list) or not branches:
            _fail("`unionAll` must be a non-empty list of selects")
        rows = [self.node(b, this, idx, top_level) for b in branches]
        first = [n for n, _ in rows[0].columns]
        for r in rows[1:]:
            if [n for n, _ in r.columns] != first:
                _fail(f"every unionAll branch must have the same columns in the same "
                      f"order: {first} vs {[n for n, _ in r.columns]}")
        types = [t for _, t in rows[0].columns]
        for r in rows[1:]:
            types = [a if a == b else "VARCHAR" for a, (_, b) in zip(types, r.columns)]
        columns = list(zip(first, types))
        lists = [self.retype(r, columns) for r in rows]
        return Rows(f"list_concat({', '.join(lists)})", columns, single=False)

    def retype(self, rows: Rows, columns) -> str:
        """rows as a list of STRUCTs whose fields have exactly `columns`' types."""
        if [t for _, t in rows.columns] == [t for _, t in columns]:
            return rows.as_list()
        r = self.names.fresh("r")
        fields = ", ".join(f"{sql_string(n)}: CAST(struct_extract({r}, {sql_string(n)}) "
                           f"AS {t})" for n, t in columns)
        return f"list_transform({rows.as_list()}, lambda {r}: {{{fields}}})"

    def cross(self, parts: list[Rows]) -> Rows:
        columns = [c for p in parts for c in p.columns]
        seen = set()
        for n, _ in columns:
            if n in seen:
                _fail(f"column name {n!r} is used twice in the view")
            seen.add(n)
        singles = [p for p in parts if p.single]
        lists = [p for p in parts if not p.single]
        if len(parts) == 1:
            return parts[0]
        if not lists:           # several one-row parts: one merged STRUCT
            fields = [f[1:-1] for f in (p.sql for p in singles)]
            return Rows("{" + ", ".join(fields) + "}", columns, single=True)
        # Every part is evaluated once (bound as a field of `h`), then crossed.
        h = self.names.fresh("h")
        bound = {}
        hold = []
        for k, p in enumerate(parts):
            bound[id(p)] = f"struct_extract({h}, 'p{k}')"
            hold.append(f"'p{k}': {p.sql}")
        refs, loops = {}, []
        for p in parts:
            if p.single:
                refs[id(p)] = bound[id(p)]
            else:
                r = self.names.fresh("r")
                refs[id(p)] = r
                loops.append((r, bound[id(p)]))
        fields = ", ".join(f"{sql_string(n)}: struct_extract({refs[id(p)]}, {sql_string(n)})"
                           for p in parts for n, _ in p.columns)
        inner = "{" + fields + "}"
        r, src = loops[-1]
        inner = f"list_transform({src}, lambda {r}: {inner})"
        for r, src in reversed(loops[:-1]):
            inner = f"flatten(list_transform({src}, lambda {r}: {inner}))"
        return Rows(f"list_transform([{{{', '.join(hold)}}}], lambda {h}: {inner})[1]",
                    columns, single=False)

    # -- the statement ----------------------------------------------------------------
    def where(self) -> list[str]:
        conds = []
        items = self.view.get("where") or []
        if not isinstance(items, list):
            _fail("`where` must be a list of {path: ...}")
        for w in items:
            if not isinstance(w, dict):
                _fail(f"where item {w!r} must be an object with a `path`")
            path = w.get("path")
            e = self.path(path, self.root, "CAST(0 AS BIGINT)", "where")
            conds.append(f"coalesce({as_bool(e, self.names, f'where path {path!r}')}, false)")
        return conds

    def compile(self, source: str, carry: tuple[str, ...]) -> str:
        rows = self.body({"select": self.view["select"]}, self.root, "CAST(0 AS BIGINT)",
                         top_level=True)
        conds = self.where()
        for c in carry:
            if not _NAME.match(c):
                _fail(f"carry column {c!r} is not a plain column name")
            if c in {n for n, _ in rows.columns}:
                _fail(f"carry column {c!r} clashes with a view column")
        carried = "".join(f'"{c}", ' for c in carry)
        ctes = [self.repeat_cte(column, paths) for column, paths in self.repeats]
        top = ", ".join(sql_string(f'$."{f}"') for f in self.names.root_fields)
        top_sql = f", json_extract(resource, [{top}]) AS _top" if top else ""
        rtype = sql_string(self.view["resource"])
        base = (f"SELECT {carried}resource AS _r{top_sql} FROM {source} "
                f"WHERE resource_type = {rtype}")
        where = " AND ".join(conds) or "true"
        rows_sql = rows.sql if rows.single else f"UNNEST({rows.sql})"
        if not self.repeats:
            return (f"SELECT {carried}UNNEST(_row) FROM (SELECT {carried}{rows_sql} AS _row "
                    f"FROM ({base}) AS _b WHERE {where}) AS _v")
        ctes.insert(0, f"_b AS (SELECT row_number() OVER () AS _rid, * FROM ({base}) AS _s "
                    f"WHERE {where})")
        joins = []
        for column, _ in self.repeats:
            joins.append(f"LEFT JOIN (SELECT _rid, list(_node ORDER BY _ord) AS {column} "
                         f"FROM {column}_t GROUP BY _rid) USING (_rid)")
        return (f"WITH RECURSIVE {', '.join(ctes)} SELECT {carried}UNNEST(_row) FROM "
                f"(SELECT {carried}{rows_sql} AS _row FROM _b {' '.join(joins)}) AS _v")

    def repeat_cte(self, column: str, paths: list[str]) -> str:
        """Every item reached by applying `paths` again and again (depth first, in
        document order: `_ord` is the path of positions from the resource)."""
        def step(this: Expr) -> str:
            colls = [as_coll(self.path(p, this, "0", "repeat"), self.names).sql
                     for p in paths]
            return colls[0] if len(colls) == 1 else f"list_concat({', '.join(colls)})"
        x, i = self.names.fresh("x"), self.names.fresh("i")
        start = step(self.root)
        children = step(Expr("_node", "val"))
        pairs = f"lambda {x}, {i}: {{'n': {x}, 'i': {i}}}"
        return (f"{column}_t(_rid, _node, _ord) AS ("
                f"SELECT _rid, struct_extract(_u, 'n'), [struct_extract(_u, 'i')] FROM _b, "
                f"UNNEST(list_transform({start}, {pairs})) AS _t(_u) "
                f"UNION ALL SELECT _rid, struct_extract(_u, 'n'), "
                f"list_append(_ord, struct_extract(_u, 'i')) FROM {column}_t, "
                f"UNNEST(list_transform({children}, {pairs})) AS _t(_u))")
