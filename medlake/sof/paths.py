"""FHIRPath (the parsed AST from `medlake.sof.fhirpath`) → one DuckDB SQL expression.

A FHIRPath value is a collection. In SQL it is one of two shapes (`Expr.kind`):

- "coll": a `JSON[]` list (never NULL; empty list = empty collection), e.g. `name.given`;
- "val":  a scalar holding at most one item (NULL = empty), either a JSON node
  (`type` "JSON", e.g. `name.first()`) or a typed SQL value (`type` VARCHAR, BOOLEAN,
  BIGINT or DOUBLE, e.g. a literal, `exists()`, a comparison).

Collections are navigated with DuckDB's JSON functions and list lambdas
(`list_transform`, `list_filter`, `flatten`), so a whole view runs vectorized.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from medlake.sof.errors import RUNTIME_MARKER, ViewDefinitionError
from medlake.sof.fhirpath import parse

NUMERIC_JSON = "('BIGINT', 'UBIGINT', 'DOUBLE')"
EMPTY = "CAST([] AS JSON[])"

# FHIR / System type name → the JSON kinds (json_type) its values take.
_JSON_KINDS = {
    "boolean": ("BOOLEAN",), "integer": ("BIGINT", "UBIGINT"),
    "positiveInt": ("BIGINT", "UBIGINT"), "unsignedInt": ("BIGINT", "UBIGINT"),
    "decimal": ("DOUBLE", "BIGINT", "UBIGINT"),
}
_SYSTEM_TYPES = {"String": "string", "Boolean": "boolean", "Integer": "integer",
                 "Decimal": "decimal", "Date": "date", "DateTime": "dateTime",
                 "Time": "time"}

# Functions of one string: SQL template ({0} the string, {1}.. the arguments), number
# of arguments, result type.
_STRING_FNS = {
    "startsWith": ("starts_with({0}, {1})", 1, "BOOLEAN"),
    "endsWith": ("ends_with({0}, {1})", 1, "BOOLEAN"),
    "contains": ("contains({0}, {1})", 1, "BOOLEAN"),
    "matches": ("regexp_full_match({0}, {1})", 1, "BOOLEAN"),
    "lower": ("lower({0})", 0, "VARCHAR"),
    "upper": ("upper({0})", 0, "VARCHAR"),
    "trim": ("trim({0})", 0, "VARCHAR"),
    "length": ("CAST(length({0}) AS BIGINT)", 0, "BIGINT"),
    "toString": ("{0}", 0, "VARCHAR"),
    "replace": ("replace({0}, {1}, {2})", 2, "VARCHAR"),
}


@dataclass(frozen=True)
class Expr:
    sql: str
    kind: str                 # "coll" or "val"
    type: str = "JSON"        # for "val": JSON, VARCHAR, BOOLEAN, BIGINT or DOUBLE
    single: bool = False      # a "coll" known to hold at most one item
    root: bool = False        # the resource itself (its fields are pre-extracted)
    # For a member access: the member's JSON text as extracted (NULL when absent, an
    # array for a repeating element), so first()/exists() need not build the list.
    raw: str | None = None
    fhir_type: str | None = None   # the FHIR type ofType() selected, when known


@dataclass
class Names:
    """Per-view state shared by every expression: fresh lambda names and the resource's
    top-level fields, which the view extracts once per row with one JSON parse."""
    counter: int = 0
    root_fields: list[str] = field(default_factory=list)

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"_{prefix}{self.counter}"

    def root_field(self, name: str) -> str:
        if name not in self.root_fields:
            self.root_fields.append(name)
        return f"_top[{self.root_fields.index(name) + 1}]"


@dataclass(frozen=True)
class Scope:
    this: Expr
    root: Expr
    idx: str                  # SQL for %rowIndex
    constants: dict
    names: Names


def sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def raise_sql(message: str) -> str:
    """SQL that fails the query with a ViewDefinitionError message when evaluated."""
    return f"error({sql_string(RUNTIME_MARKER + message)})"


def _simple(sql: str) -> bool:
    """Cheap to evaluate twice: a column or lambda variable, maybe indexed, or a literal."""
    return re.fullmatch(r"[\w\[\]\-]+|'[^']*'", sql) is not None


def let(sql: str, body, names: Names) -> str:
    """`body(ref)` with `sql` evaluated once: big expressions are bound through a
    one-element list_transform rather than repeated in the SQL text."""
    if _simple(sql):
        return body(sql)
    var = names.fresh("v")
    return f"list_transform([{sql}], lambda {var}: {body(var)})[1]"


def json_path(name: str) -> str:
    return sql_string('$."' + name.replace('"', '\\"') + '"')


# json_extract returns minified JSON, so its first character gives the value's kind
# without parsing it again.
def _normalize(j: str) -> str:
    """A member's JSON text (maybe NULL, null, a value or an array) → JSON[]."""
    return (f"CASE WHEN starts_with({j}, '[') THEN CAST({j} AS JSON[]) "
            f"WHEN {j} IS NULL OR {j} = 'null' THEN {EMPTY} ELSE [{j}] END")


def _first_of_raw(j: str) -> str:
    return (f"CASE WHEN starts_with({j}, '[') THEN json_extract({j}, '$[0]') "
            f"WHEN {j} = 'null' THEN NULL ELSE {j} END")


def single_of_raw(j: str, what: str) -> str:
    """The one item of a member's JSON text; more than one is an error."""
    return (f"CASE WHEN starts_with({j}, '[') THEN CASE WHEN json_array_length({j}) > 1 "
            f"THEN {raise_sql(what + ' returned more than one item')} "
            f"ELSE json_extract({j}, '$[0]') END WHEN {j} = 'null' THEN NULL ELSE {j} END")


def to_json(e: Expr) -> str:
    return e.sql if e.type == "JSON" else f"to_json({e.sql})"


def as_coll(e: Expr, names: Names) -> Expr:
    if e.kind == "coll":
        return e
    return Expr(let(to_json(e), lambda v: f"CASE WHEN {v} IS NULL THEN {EMPTY} ELSE [{v}] END",
                    names), "coll", single=True)


def as_val(e: Expr, names: Names, what: str) -> Expr:
    """A collection used where FHIRPath needs a single item; more than one is an error."""
    if e.kind == "val":
        return e
    if e.single:
        return Expr(f"{e.sql}[1]", "val")
    if e.raw:
        return Expr(let(e.raw, lambda j: single_of_raw(j, what), names), "val")
    return Expr(let(e.sql, lambda c: f"CASE WHEN len({c}) > 1 THEN "
                f"{raise_sql(what + ' returned more than one item')} ELSE {c}[1] END",
                names), "val")


def cast(e: Expr, sql_type: str) -> str:
    """A "val" as the SQL type `sql_type` (VARCHAR, BOOLEAN, BIGINT, DOUBLE)."""
    if e.type == sql_type:
        return e.sql
    if e.type == "JSON":
        if sql_type == "VARCHAR":
            return f"json_extract_string({e.sql}, '$')"
        return f"TRY_CAST({e.sql} AS {sql_type})"
    return f"TRY_CAST({e.sql} AS {sql_type})"


def as_bool(e: Expr, names: Names, strict_what: str | None = None) -> str:
    """FHIRPath's singleton evaluation in a boolean context. With `strict_what` a
    non-boolean value is an error (a view's `where`) instead of counting as true."""
    if e.kind == "val" and e.type == "BOOLEAN":
        return e.sql
    if e.kind == "val" and e.type != "JSON":
        if strict_what:
            raise ViewDefinitionError(f"{strict_what} must be a boolean expression")
        return f"({e.sql} IS NOT NULL OR NULL)"
    other = (raise_sql(f"{strict_what} returned a value that is not a boolean")
             if strict_what else "true")

    def node(v: str) -> str:
        return (f"CASE WHEN {v} IS NULL THEN NULL WHEN json_type({v}) = 'BOOLEAN' "
                f"THEN TRY_CAST({v} AS BOOLEAN) ELSE {other} END")
    if e.kind == "val":
        return let(e.sql, node, names)
    if e.single:
        return let(f"{e.sql}[1]", node, names)
    what = strict_what or "a boolean expression"
    return let(e.sql, lambda c: f"CASE WHEN len({c}) > 1 THEN "
               f"{raise_sql(what + ' returned more than one item')} "
               f"ELSE {node(c + '[1]')} END", names)


def member(base: Expr, name: str, scope: Scope) -> Expr:
    names = scope.names
    if base.root:
        raw = names.root_field(name)
        return Expr(let(raw, _normalize, names), "coll", raw=raw)
    if base.kind == "val" and base.type != "JSON":
        return Expr(EMPTY, "coll", single=True)          # primitives have no children
    if base.kind == "coll" and base.single:
        base = Expr(f"{base.sql}[1]", "val")
    if base.kind == "val":
        raw = f"json_extract({base.sql}, {json_path(name)})"
        return Expr(let(raw, _normalize, names), "coll", raw=raw)
    x = names.fresh("x")
    inner = member(Expr(x, "val"), name, scope).sql
    return Expr(f"flatten(list_transform({base.sql}, lambda {x}: {inner}))", "coll")


def type_name(arg) -> str:
    """The type named by an ofType()/is()/as()/getReferenceKey() argument."""
    if arg[0] == "type":
        name = arg[1]
    elif arg[0] == "member":
        name = arg[2]
    elif arg[0] == "lit" and arg[1] == "string":
        name = arg[2]
    else:
        raise ViewDefinitionError(f"expected a type name, got {arg!r}")
    return _SYSTEM_TYPES.get(name, name)


def _time_boundary(t: str, high: bool) -> str:
    """A time without zone, 'HH', 'HH:MM', 'HH:MM:SS' or with a fraction, padded to ms."""
    fill = "23:59:59.999" if high else "00:00:00.000"
    return (f"CASE WHEN length({t}) <= 8 THEN {t} || right({sql_string(fill)}, "
            f"12 - length({t})) ELSE rpad(left({t}, 12), 12, {sql_string('9' if high else '0')})"
            f" END")


def _boundary_sql(x: str, high: bool, is_datetime: bool) -> str:
    s = f"json_extract_string({x}, '$')"
    decimals = f"CAST(length(split_part({s}, '.', 2)) AS INTEGER)"
    number = (f"round(CAST({s} AS DOUBLE) {'+' if high else '-'} 0.5 * pow(10, -{decimals}),"
              f" {decimals} + 1)")
    day = f"split_part({s}, 'T', 1)"
    date = (f"CASE length({day}) WHEN 4 THEN {day} || {sql_string('-12-31' if high else '-01-01')}"
            f" WHEN 7 THEN " + (f"strftime(last_day(CAST({day} || '-01' AS DATE)), '%Y-%m-%d')"
                                if high else f"{day} || '-01'") + f" ELSE {day} END")
    clock = f"split_part({s}, 'T', 2)"
    zone = f"regexp_extract({clock}, '(Z|[+-][0-9][0-9]:[0-9][0-9])$')"
    bare = f"regexp_replace({clock}, '(Z|[+-][0-9][0-9]:[0-9][0-9])$', '')"
    default_zone = sql_string("-12:00" if high else "+14:00")
    datetime = (f"{date} || 'T' || {_time_boundary(bare, high)} || "
                f"CASE WHEN {zone} = '' THEN {default_zone} ELSE {zone} END")
    time = _time_boundary(s, high)
    dt_test = "true" if is_datetime else f"contains({s}, 'T')"
    return (f"CASE WHEN json_type({x}) IN {NUMERIC_JSON} THEN to_json({number}) "
            f"WHEN regexp_matches({s}, '^[0-9][0-9](:|$)') THEN to_json({time}) "
            f"WHEN {dt_test} THEN to_json({datetime}) ELSE to_json({date}) END")


class Compiler:
    """Compiles one parsed FHIRPath expression in a Scope."""

    def __init__(self, scope: Scope):
        self.scope = scope
        self.names = scope.names

    def compile(self, node) -> Expr:
        tag = node[0]
        if tag == "this":
            return self.scope.this
        if tag == "lit":
            return self.literal(node[1], node[2])
        if tag == "const":
            return self.constant(node[1])
        if tag == "member":
            return member(self.compile(node[1]), node[2], self.scope)
        if tag == "index":
            base = as_coll(self.compile(node[1]), self.names)
            index = as_val(self.compile(node[2]), self.names, "an indexer")
            return Expr(f"{base.sql}[{cast(index, 'BIGINT')} + 1]", "val")
        if tag == "call":
            return self.call(node)
        if tag == "op":
            return self.operator(node[1], node[2], node[3])
        if tag == "neg":
            e = as_val(self.compile(node[1]), self.names, "unary minus")
            t = e.type if e.type in ("BIGINT", "DOUBLE") else "DOUBLE"
            return Expr(f"(- {cast(e, t)})", "val", t)
        if tag == "index_var":
            raise ViewDefinitionError("$index is not supported")
        raise ViewDefinitionError(f"unsupported FHIRPath construct {tag!r}")

    # -- values -------------------------------------------------------------------
    def literal(self, kind: str, value) -> Expr:
        if kind == "string" or kind == "date":
            return Expr(sql_string(value), "val", "VARCHAR")
        if kind == "integer":
            return Expr(f"CAST({value} AS BIGINT)", "val", "BIGINT")
        if kind == "decimal":
            return Expr(f"CAST({value} AS DOUBLE)", "val", "DOUBLE")
        if kind == "boolean":
            return Expr("true" if value else "false", "val", "BOOLEAN")
        return Expr(EMPTY, "coll", single=True)

    def constant(self, name: str) -> Expr:
        if name == "rowIndex":
            return Expr(self.scope.idx, "val", "BIGINT")
        if name in ("resource", "rootResource", "context"):
            return self.scope.root
        if name not in self.scope.constants:
            raise ViewDefinitionError(f"undefined constant %{name}: declare it in the "
                                      f"view's `constant` list")
        return self.scope.constants[name]

    def sub(self, this: Expr) -> Compiler:
        return Compiler(replace(self.scope, this=this))

    def lambda_over(self, body_node, fn):
        """(var, fn(compiled body)) for a lambda whose $this is each item in turn."""
        x = self.names.fresh("x")
        return x, fn(self.sub(Expr(x, "val")).compile(body_node))

    # -- functions ----------------------------------------------------------------
    def call(self, node) -> Expr:
        _, base_node, name, args = node
        if name in _STRING_FNS:
            return self.string_fn(name, base_node, args)
        handler = getattr(self, f"fn_{name}", None)
        if handler is None:
            raise ViewDefinitionError(f"FHIRPath function {name}() is not supported")
        return handler(base_node, args)

    def _base(self, base_node) -> Expr:
        return self.compile(base_node)

    def _nargs(self, name, args, lo, hi):
        if not lo <= len(args) <= hi:
            raise ViewDefinitionError(f"{name}() takes {lo}..{hi} arguments, got {len(args)}")

    def fn_first(self, base_node, args):
        self._nargs("first", args, 0, 0)
        base = self._base(base_node)
        if base.raw:
            return Expr(let(base.raw, _first_of_raw, self.names), "val")
        return base if base.kind == "val" else Expr(f"{base.sql}[1]", "val")

    def fn_last(self, base_node, args):
        self._nargs("last", args, 0, 0)
        base = self._base(base_node)
        return base if base.kind == "val" else Expr(f"{base.sql}[-1]", "val")

    def fn_tail(self, base_node, args):
        self._nargs("tail", args, 0, 0)
        base = as_coll(self._base(base_node), self.names)
        return Expr(f"{base.sql}[2:]", "coll")

    def _count_arg(self, args, name) -> str:
        self._nargs(name, args, 1, 1)
        return cast(as_val(self.compile(args[0]), self.names, name + "()"), "BIGINT")

    def fn_skip(self, base_node, args):
        n = self._count_arg(args, "skip")
        base = as_coll(self._base(base_node), self.names)
        return Expr(f"{base.sql}[greatest({n}, 0) + 1:]", "coll", single=base.single)

    def fn_take(self, base_node, args):
        n = self._count_arg(args, "take")
        base = as_coll(self._base(base_node), self.names)
        return Expr(f"{base.sql}[:greatest({n}, 0)]", "coll", single=base.single)

    def fn_exists(self, base_node, args):
        self._nargs("exists", args, 0, 1)
        base = self.fn_where(base_node, args) if args else self._base(base_node)
        if base.kind == "val":
            return Expr(f"({base.sql} IS NOT NULL)", "val", "BOOLEAN")
        if base.raw:
            return Expr(let(base.raw, lambda j: f"coalesce({j} NOT IN ('null', '[]'), false)",
                            self.names), "val", "BOOLEAN")
        return Expr(f"(len({base.sql}) > 0)", "val", "BOOLEAN")

    def fn_empty(self, base_node, args):
        self._nargs("empty", args, 0, 0)
        exists = self.fn_exists(base_node, [])
        return Expr(f"(NOT {exists.sql})", "val", "BOOLEAN")

    def fn_count(self, base_node, args):
        self._nargs("count", args, 0, 0)
        base = as_coll(self._base(base_node), self.names)
        return Expr(f"CAST(len({base.sql}) AS BIGINT)", "val", "BIGINT")

    def fn_distinct(self, base_node, args):
        self._nargs("distinct", args, 0, 0)
        base = as_coll(self._base(base_node), self.names)
        return Expr(f"list_distinct({base.sql})", "coll", single=base.single)

    def fn_where(self, base_node, args):
        self._nargs("where", args, 1, 1)
        base = as_coll(self._base(base_node), self.names)
        x, cond = self.lambda_over(args[0], lambda e: as_bool(e, self.names))
        return Expr(f"list_filter({base.sql}, lambda {x}: coalesce({cond}, false))", "coll",
                    single=base.single)

    def fn_select(self, base_node, args):
        self._nargs("select", args, 1, 1)
        base = as_coll(self._base(base_node), self.names)
        x, items = self.lambda_over(args[0], lambda e: as_coll(e, self.names).sql)
        return Expr(f"flatten(list_transform({base.sql}, lambda {x}: {items}))", "coll")

    def fn_not(self, base_node, args):
        self._nargs("not", args, 0, 0)
        return Expr(f"(NOT {as_bool(self._base(base_node), self.names)})", "val", "BOOLEAN")

    def fn_ofType(self, base_node, args):
        self._nargs("ofType", args, 1, 1)
        t = type_name(args[0])
        if base_node[0] == "member":
            # A choice element: value.ofType(Quantity) is the JSON member valueQuantity.
            parent = self.compile(base_node[1])
            return replace(member(parent, base_node[2] + t[0].upper() + t[1:], self.scope),
                           fhir_type=t)
        base = self._base(base_node)
        if base.kind == "val" and base.type != "JSON":
            return base
        base = as_coll(base, self.names)
        kinds = _JSON_KINDS.get(t, ("VARCHAR",) if t[0].islower() else ("OBJECT",))
        x = self.names.fresh("x")
        in_kinds = ", ".join(sql_string(k) for k in kinds)
        return Expr(f"list_filter({base.sql}, lambda {x}: json_type({x}) IN ({in_kinds}))",
                    "coll", single=base.single)

    fn_as = fn_ofType

    def fn_is(self, base_node, args):
        return self.fn_exists(("call", base_node, "ofType", args), [])

    def fn_extension(self, base_node, args):
        self._nargs("extension", args, 1, 1)
        url = as_val(self.compile(args[0]), self.names, "extension()")
        exts = member(self._base(base_node), "extension", self.scope)
        x = self.names.fresh("x")
        return Expr(f"list_filter({exts.sql}, lambda {x}: "
                    f"json_extract_string({x}, '$.url') = {cast(url, 'VARCHAR')})", "coll")

    def fn_join(self, base_node, args):
        self._nargs("join", args, 0, 1)
        sep = (cast(as_val(self.compile(args[0]), self.names, "join()"), "VARCHAR")
               if args else "''")
        base = as_coll(self._base(base_node), self.names)
        x = self.names.fresh("x")
        return Expr(f"array_to_string(list_transform({base.sql}, lambda {x}: "
                    f"json_extract_string({x}, '$')), {sep})", "val", "VARCHAR")

    def fn_getResourceKey(self, base_node, args):
        self._nargs("getResourceKey", args, 0, 0)
        base = self._base(base_node)
        if not base.root:
            raise ViewDefinitionError("getResourceKey() applies to the resource itself")
        return Expr(f"json_extract_string({self.names.root_field('id')}, '$')", "val",
                    "VARCHAR")

    def fn_getReferenceKey(self, base_node, args):
        self._nargs("getReferenceKey", args, 0, 1)
        wanted = type_name(args[0]) if args else None
        base = self._base(base_node)
        # `Type/id` at the end of a relative or absolute reference, maybe versioned;
        # split_part rather than a regex: this runs for every reference of every row.
        def key(node: str) -> str:
            ref = f"split_part(json_extract_string({node}, '$.reference'), '/_history/', 1)"
            type_ok = "<> ''" if wanted is None else f"= {sql_string(wanted)}"
            return let(ref, lambda r: (
                f"CASE WHEN split_part({r}, '/', -2) {type_ok} "
                f"THEN nullif(split_part({r}, '/', -1), '') END"), self.names)
        if base.kind == "val" or base.single:
            node = base.sql if base.kind == "val" else f"{base.sql}[1]"
            return Expr(key(node), "val", "VARCHAR")
        x, y = self.names.fresh("x"), self.names.fresh("y")
        return Expr(f"list_filter(list_transform({base.sql}, lambda {x}: to_json({key(x)})),"
                    f" lambda {y}: {y} IS NOT NULL)", "coll")

    def fn_lowBoundary(self, base_node, args):
        return self.boundary(base_node, args, high=False)

    def fn_highBoundary(self, base_node, args):
        return self.boundary(base_node, args, high=True)

    def boundary(self, base_node, args, high: bool) -> Expr:
        """The least/greatest value a decimal, date, dateTime or time could stand for,
        given the precision it was written with."""
        self._nargs("boundary", args, 0, 0)
        base = self._base(base_node)
        is_datetime = base.fhir_type in ("dateTime", "instant")
        v = as_val(base, self.names, "lowBoundary()/highBoundary()")
        if v.type in ("BIGINT", "DOUBLE"):
            v = Expr(f"to_json({v.sql})", "val")
        elif v.type != "JSON":
            v = Expr(f"to_json({cast(v, 'VARCHAR')})", "val")
        return Expr(let(v.sql, lambda x: _boundary_sql(x, high, is_datetime), self.names),
                    "val")

    def fn_iif(self, base_node, args):
        self._nargs("iif", args, 2, 3)
        cond = as_bool(self.compile(args[0]), self.names)
        then = as_coll(self.compile(args[1]), self.names)
        other = as_coll(self.compile(args[2]), self.names) if len(args) == 3 else \
            Expr(EMPTY, "coll", single=True)
        return Expr(f"CASE WHEN {cond} THEN {then.sql} ELSE {other.sql} END", "coll",
                    single=then.single and other.single)

    def string_fn(self, name, base_node, args) -> Expr:
        sql, n_args, result = _STRING_FNS[name]
        self._nargs(name, args, n_args, n_args)
        values = [cast(as_val(self.compile(a), self.names, name + "()"), "VARCHAR")
                  for a in [base_node, *args]]
        return Expr(sql.format(*values), "val", result)

    # -- operators ----------------------------------------------------------------
    def operator(self, op, left_node, right_node) -> Expr:
        left, right = self.compile(left_node), self.compile(right_node)
        names = self.names
        if op in ("and", "or"):
            return Expr(f"({as_bool(left, names)} {op.upper()} {as_bool(right, names)})",
                        "val", "BOOLEAN")
        if op == "xor":
            return Expr(f"({as_bool(left, names)} <> {as_bool(right, names)})", "val",
                        "BOOLEAN")
        if op == "implies":
            return Expr(f"((NOT {as_bool(left, names)}) OR {as_bool(right, names)})", "val",
                        "BOOLEAN")
        if op == "|":
            lc, rc = as_coll(left, names), as_coll(right, names)
            return Expr(f"list_distinct(list_concat({lc.sql}, {rc.sql}))", "coll")
        if op in ("=", "!="):
            return self.equality(op, left, right)
        if op in ("~", "!~"):
            lv, rv = (as_val(e, names, f"'{op}'") for e in (left, right))
            same = (f"(({cast(lv, 'VARCHAR')} IS NULL AND {cast(rv, 'VARCHAR')} IS NULL) OR "
                    f"coalesce(lower(trim({cast(lv, 'VARCHAR')})) = "
                    f"lower(trim({cast(rv, 'VARCHAR')})), false))")
            return Expr(same if op == "~" else f"(NOT {same})", "val", "BOOLEAN")
        if op in ("<", ">", "<=", ">="):
            lv, rv = (as_val(e, names, f"'{op}'") for e in (left, right))
            return Expr(self.compare(op, lv, rv), "val", "BOOLEAN")
        if op in ("+", "-", "*", "/", "div", "mod", "&"):
            return self.arithmetic(op, as_val(left, names, f"'{op}'"),
                                   as_val(right, names, f"'{op}'"))
        if op in ("in", "contains"):
            item, coll = (left, right) if op == "in" else (right, left)
            item = as_val(item, names, f"'{op}'")
            coll = as_coll(coll, names)
            x = names.fresh("x")
            t = item.type if item.type != "JSON" else "VARCHAR"
            return Expr(f"list_contains(list_transform({coll.sql}, lambda {x}: "
                        f"{cast(Expr(x, 'val'), t)}), {cast(item, t)})", "val", "BOOLEAN")
        raise ViewDefinitionError(f"FHIRPath operator {op!r} is not supported")

    def compare(self, op: str, lv: Expr, rv: Expr) -> str:
        sql_op = "<>" if op == "!=" else op
        if lv.type == "JSON" and rv.type == "JSON":
            def dynamic(a, b):
                return let(b, lambda b: (
                    f"CASE WHEN json_type({a}) IN {NUMERIC_JSON} AND json_type({b}) IN "
                    f"{NUMERIC_JSON} THEN TRY_CAST({a} AS DOUBLE) {sql_op} "
                    f"TRY_CAST({b} AS DOUBLE) ELSE json_extract_string({a}, '$') {sql_op} "
                    f"json_extract_string({b}, '$') END"), self.names)
            return let(lv.sql, lambda a: dynamic(a, rv.sql), self.names)
        types = {lv.type, rv.type} - {"JSON"}
        if types <= {"BIGINT", "DOUBLE"}:
            t = "DOUBLE" if "DOUBLE" in types or len(types) > 1 else "BIGINT"
            if lv.type == "JSON" or rv.type == "JSON":
                t = "DOUBLE"
        elif len(types) == 1:
            t = types.pop()
        else:
            t = "VARCHAR"
        return f"({cast(lv, t)} {sql_op} {cast(rv, t)})"

    def equality(self, op: str, left: Expr, right: Expr) -> Expr:
        names = self.names
        if (left.kind == "val" or left.single) and (right.kind == "val" or right.single):
            lv, rv = as_val(left, names, op), as_val(right, names, op)
            return Expr(self.compare(op, lv, rv), "val", "BOOLEAN")
        # Collections: equal when the same size and equal item by item (FHIRPath §6.1).
        lc, rc = as_coll(left, names), as_coll(right, names)
        x, y = names.fresh("x"), names.fresh("x")
        body = let(lc.sql, lambda a: let(rc.sql, lambda b: (
            f"CASE WHEN len({a}) = 0 OR len({b}) = 0 THEN NULL "
            f"WHEN len({a}) <> len({b}) THEN false "
            f"ELSE list_transform({a}, lambda {x}: json_extract_string({x}, '$')) = "
            f"list_transform({b}, lambda {y}: json_extract_string({y}, '$')) END"), names),
            names)
        return Expr(body if op == "=" else f"(NOT {body})", "val", "BOOLEAN")

    def arithmetic(self, op: str, lv: Expr, rv: Expr) -> Expr:
        if op == "&":
            return Expr(f"(coalesce({cast(lv, 'VARCHAR')}, '') || "
                        f"coalesce({cast(rv, 'VARCHAR')}, ''))", "val", "VARCHAR")
        if op == "+" and "VARCHAR" in (lv.type, rv.type):
            return Expr(f"({cast(lv, 'VARCHAR')} || {cast(rv, 'VARCHAR')})", "val", "VARCHAR")
        both_int = lv.type == "BIGINT" and rv.type == "BIGINT"
        t = "BIGINT" if both_int and op != "/" else "DOUBLE"
        a, b = cast(lv, t), cast(rv, t)
        sql = {"+": f"({a} + {b})", "-": f"({a} - {b})", "*": f"({a} * {b})",
               "/": f"({a} / nullif({b}, 0))",
               "div": f"CAST(trunc({a} / nullif({b}, 0)) AS BIGINT)",
               "mod": f"({a} % nullif({b}, 0))"}[op]
        return Expr(sql, "val", "BIGINT" if op == "div" else t)


def compile_path(text: str, scope: Scope) -> Expr:
    """Parse and compile a FHIRPath expression in `scope`."""
    return Compiler(scope).compile(parse(text))
