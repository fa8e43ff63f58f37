"""medlake's own expectation types, each resolved to SQL that returns the unexpected rows
of a batch (`{batch}`), the form of GX's `UnexpectedRowsExpectation`.

They cover what needs the rest of the lake or the table's history, which GX's built-in
expectations cannot see: referential integrity against `silver.patient`, dates in the
future, freshness, and row-count drift against the previous Delta version. Referential
integrity and drift are added to every suite automatically (`auto_rules`), so a table
another team adds gets them without editing its suite.

`BUILT_IN_SQL` also resolves the common GX expectation types to the same form, so a
large table can be validated entirely inside DuckDB (see `quality.gx_runner`).
"""
from __future__ import annotations

from collections.abc import Callable

from quality.suites import Expectation

PATIENT = "silver.patient"
PERSON_KEY = "person_key"


def _person_key_in_patient(kw: dict, ctx: "RuleContext") -> str:
    column = kw.get("column", PERSON_KEY)
    return (f'SELECT b."{column}" FROM {{batch}} b WHERE b."{column}" IS NOT NULL '
            f'AND b."{column}" NOT IN (SELECT "{PERSON_KEY}" FROM {ctx.scan(PATIENT)} p '
            f'WHERE p."{PERSON_KEY}" IS NOT NULL)')


def _not_in_future(kw: dict, ctx: "RuleContext") -> str:
    column = kw["column"]
    # De-identified dates are shifted by up to MEDLAKE_DATE_SHIFT_DAYS either way, so a
    # recent true date may legitimately land that far ahead.
    slack = ctx.max_shift_days if kw.get("allow_shift") else 0
    return (f'SELECT "{column}" FROM {{batch}} WHERE "{column}" IS NOT NULL AND '
            f'TRY_CAST("{column}" AS DATE) > current_date + {int(slack)}')


def _fresh(kw: dict, ctx: "RuleContext") -> str:
    column, hours = kw["column"], float(kw.get("max_age_hours", 24))
    # One row (the newest timestamp) when the table is stale; none when fresh or empty.
    return (f'SELECT max("{column}") AS newest FROM {{batch}} HAVING max("{column}") < '
            f"now() - INTERVAL '{hours} hours'")


def _row_count_stable(kw: dict, ctx: "RuleContext") -> str:
    previous = ctx.previous_rows
    ratio = float(kw.get("max_change", 0.5))
    if previous is None or previous == 0:
        return "SELECT * FROM {batch} WHERE false"  # a first version has nothing to drift from
    return (f"SELECT count(*) AS n, {previous} AS previous FROM {{batch}} "
            f"HAVING abs(count(*) - {previous}) > {ratio} * {previous}")


def _q(v) -> str:
    return "'" + str(v).replace("'", "''") + "'" if isinstance(v, str) else str(v)


def _between(kw: dict, ctx) -> str:
    c, lo, hi = kw["column"], kw.get("min_value"), kw.get("max_value")
    cond = " OR ".join(x for x in [f'"{c}" < {_q(lo)}' if lo is not None else "",
                                   f'"{c}" > {_q(hi)}' if hi is not None else ""] if x)
    return f'SELECT "{c}" FROM {{batch}} WHERE "{c}" IS NOT NULL AND ({cond or "false"})'


def _unique(cols: list[str]) -> str:
    quoted = [f'"{c}"' for c in cols]
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in quoted)
    # GX counts every row of a duplicated group as unexpected; so does this.
    return (f"SELECT * FROM (SELECT count(*) OVER (PARTITION BY {', '.join(quoted)}) AS n "
            f"FROM {{batch}} WHERE {not_null}) WHERE n > 1")


def _columns_match(kw: dict, ctx) -> str:
    wanted = ", ".join(_q(c) for c in kw["column_set"])
    missing = (f"SELECT unnest([{wanted}]) AS c EXCEPT "
               f"SELECT column_name FROM (DESCRIBE SELECT * FROM {{batch}})")
    if kw.get("exact_match", True):
        missing += (f" UNION ALL (SELECT column_name FROM (DESCRIBE SELECT * FROM {{batch}}) "
                    f"EXCEPT SELECT unnest([{wanted}]))")
    return missing


BUILT_IN_SQL: dict[str, Callable[[dict, "RuleContext"], str]] = {
    "ExpectColumnValuesToNotBeNull":
        lambda kw, ctx: f'SELECT 1 FROM {{batch}} WHERE "{kw["column"]}" IS NULL',
    "ExpectColumnValuesToBeUnique": lambda kw, ctx: _unique([kw["column"]]),
    "ExpectCompoundColumnsToBeUnique": lambda kw, ctx: _unique(kw["column_list"]),
    "ExpectColumnValuesToBeInSet":
        lambda kw, ctx: (f'SELECT 1 FROM {{batch}} WHERE "{kw["column"]}" IS NOT NULL AND '
                         f'"{kw["column"]}" NOT IN ({", ".join(_q(v) for v in kw["value_set"])})'),
    "ExpectColumnValuesToBeBetween": _between,
    "ExpectColumnValuesToMatchRegex":
        lambda kw, ctx: (f'SELECT 1 FROM {{batch}} WHERE "{kw["column"]}" IS NOT NULL AND NOT '
                         f'regexp_matches("{kw["column"]}", {_q(kw["regex"])})'),
    "ExpectColumnValuesToNotMatchRegex":
        lambda kw, ctx: (f'SELECT 1 FROM {{batch}} WHERE "{kw["column"]}" IS NOT NULL AND '
                         f'regexp_matches("{kw["column"]}", {_q(kw["regex"])})'),
    "ExpectTableColumnsToMatchSet": _columns_match,
}

RULES: dict[str, Callable[[dict, "RuleContext"], str]] = {
    "ExpectPersonKeyInPatient": _person_key_in_patient,
    "ExpectColumnValuesNotInFuture": _not_in_future,
    "ExpectTableFresh": _fresh,
    "ExpectRowCountStable": _row_count_stable,
}


class RuleContext:
    """What a rule may look at besides its batch: other tables (as DuckDB scans of their
    current Delta files) and the row count of the previous version of this table."""

    def __init__(self, scan: Callable[[str], str], previous_rows: int | None,
                 max_shift_days: int = 0):
        self.scan = scan
        self.previous_rows = previous_rows
        self.max_shift_days = max_shift_days


def auto_rules(table: str, columns: list[str], declared: list[Expectation]) -> list[Expectation]:
    """Rules every table gets unless its suite already declares them."""
    have = {e.type for e in declared}
    out = []
    layer = table.split(".")[0]
    if (PERSON_KEY in columns and layer in ("silver", "gold") and table != PATIENT
            and "ExpectPersonKeyInPatient" not in have):
        out.append(Expectation("ExpectPersonKeyInPatient", {"column": PERSON_KEY}, "error",
                               "Every person_key must resolve to a de-identified patient."))
    if "ExpectRowCountStable" not in have:
        out.append(Expectation("ExpectRowCountStable", {"max_change": 0.5}, "warn",
                               "More than half the rows appeared or vanished since the "
                               "previous version."))
    return out


def sql_for(e: Expectation, ctx: RuleContext) -> str:
    """The expectation as a query of its unexpected rows over `{batch}`."""
    fn = RULES.get(e.type) or BUILT_IN_SQL.get(e.type)
    if fn is None:
        raise KeyError(f"{e.type} has no SQL form; validate this table with the pandas engine "
                       f"or add it to quality.rules.BUILT_IN_SQL.")
    return fn(e.kwargs, ctx)
