"""Run a suite from `quality.suites` on a lake table with Great Expectations 1.x.

The table is validated at one pinned Delta version, by one of these engines:

- `pandas`: the table is read into a DataFrame and GX computes in pandas, and writes
  Data Docs.
- `duckdb`: every expectation is resolved to an "unexpected rows" query
  (`quality.rules`) and computed by DuckDB over the version's Parquet files; nothing is
  copied into Python.
- `auto` (default): pandas up to `MEDLAKE_GX_PANDAS_MAX_ROWS` rows, DuckDB above, as
  measured by `bench/quality.py`. GX's own SQL datasource over duckdb-engine is not an
  option: GX closes its connection before fetching, and DuckDB 2 drops the result.

medlake's own rules (`quality.rules`) run in DuckDB on either engine.
Every result is appended to `gold.dq_results`; a Checkpoint action rebuilds the Data
Docs under `MEDLAKE_HOME/gx/`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import jinja2
import pyarrow as pa

from medlake import lake
from medlake.config import get_settings
from quality import rules
from quality.suites import SUITES, Expectation

DQ_RESULTS = "gold.dq_results"
ENGINE = os.environ.get("MEDLAKE_GX_ENGINE", "auto")
PANDAS_MAX_ROWS = int(os.environ.get("MEDLAKE_GX_PANDAS_MAX_ROWS", "200000"))
DOCS_KEEP = int(os.environ.get("MEDLAKE_GX_DOCS_KEEP", "5"))

DQ_SCHEMA = pa.schema([
    ("run_id", pa.string()), ("table_name", pa.string()), ("delta_version", pa.int64()),
    ("expectation", pa.string()), ("column_name", pa.string()), ("kwargs", pa.string()),
    ("severity", pa.string()), ("success", pa.bool_()), ("observed_value", pa.string()),
    ("unexpected_count", pa.int64()), ("rows", pa.int64()), ("engine", pa.string()),
    ("validated_at", pa.timestamp("us", tz="UTC")),
])


@dataclass
class ExpectationOutcome:
    expectation: Expectation
    success: bool
    observed: str | None = None
    unexpected: int | None = None

    @property
    def label(self) -> str:
        kw = self.expectation.kwargs
        target = kw.get("column") or ",".join(kw.get("column_list", []))
        return f"{self.expectation.type}({target})"


@dataclass
class SuiteResult:
    table: str
    success: bool
    rows: int
    version: int | None
    evaluated: int
    failed: list[str] = field(default_factory=list)
    failed_errors: list[str] = field(default_factory=list)  # failures of severity "error"
    docs_index: str | None = None
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = ""


def data_docs_index() -> Path:
    """Where the Data Docs site's front page is (it exists once a suite has run)."""
    return get_settings().gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


class _CompiledTemplates(jinja2.BytecodeCache):
    """A Jinja bytecode cache in memory. GX builds a new Jinja environment for each Data
    Docs view, so it compiled its ~50 templates again for every check: a third of a
    check's time under a profiler. With this cache a process (a Dagster run's checks)
    compiles them once; measured on the demo's tables, a check with Data Docs took
    1.0-1.1 s instead of 1.3-1.9 s."""

    def __init__(self):
        self.code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        if bucket.key in self.code:
            bucket.bytecode_from_string(self.code[bucket.key])

    def dump_bytecode(self, bucket) -> None:
        self.code[bucket.key] = bucket.bytecode_to_string()

    def clear(self) -> None:
        self.code.clear()


TEMPLATES = _CompiledTemplates()


def _reuse_compiled_templates() -> None:
    """Give every GX Jinja view the process's template cache (once per process)."""
    from great_expectations.render.view.view import DefaultJinjaView

    if getattr(DefaultJinjaView, "_medlake_templates", False):
        return
    init = DefaultJinjaView.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.env.bytecode_cache = TEMPLATES

    DefaultJinjaView.__init__ = __init__
    DefaultJinjaView._medlake_templates = True


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    _reuse_compiled_templates()

    root = get_settings().gx_root
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Dagster logs are the progress report; GX's own bars would only add noise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def _scan(table: str, version: int | None = None) -> str:
    dt = lake.open_table(table, version)
    if dt is None:
        raise LookupError(f"{table} does not exist yet; materialize it first.")
    return f"(SELECT * FROM {lake.scan_sql(dt)})"


def _previous_rows(table: str, version: int) -> int | None:
    if version == 0:
        return None
    try:
        got = lake.read(table, "SELECT count(*) FROM t", version=version - 1)
    except Exception:  # the previous version was vacuumed: nothing to compare with
        return None
    return got.column(0)[0].as_py() if got.num_columns else None


def _observed(result: dict) -> str | None:
    for key in ("observed_value", "unexpected_percent"):
        if result.get(key) is not None:
            return json.dumps(result[key], default=str)[:500]
    return None


def run_suite(table: str, engine: str | None = None, run_id: str = "adhoc",
              record: bool = True, docs: bool = True,
              suite: list[Expectation] | None = None) -> SuiteResult:
    """Validate `table` at its current Delta version; append the results to
    gold.dq_results (unless `record` is false) and rebuild Data Docs (pandas engine,
    unless `docs` is false). `suite` replaces the table's JSON suite (tests, ad hoc)."""
    started = time.perf_counter()
    dt = lake.open_table(table)
    if dt is None:
        raise LookupError(f"{table} does not exist yet; materialize it first.")
    version = dt.version()
    scan = _scan(table, version)
    columns = [f.name for f in lake.arrow_schema(dt)]
    ctx = rules.RuleContext(_scan, _previous_rows(table, version),
                            get_settings().date_shift_days)
    declared = SUITES.get(table, []) if suite is None else suite
    suite = declared + rules.auto_rules(table, columns, declared)
    con = duckdb.connect()
    try:
        rows = con.execute(f"SELECT count(*) FROM {scan}").fetchall()[0][0]
        engine = engine or ENGINE
        if engine == "auto":
            # A suite using a GX type with no SQL form here stays on GX, whatever its size.
            sql_ok = all(e.type in rules.RULES or e.type in rules.BUILT_IN_SQL for e in suite)
            engine = "duckdb" if rows > PANDAS_MAX_ROWS and sql_ok else "pandas"
        if engine not in ("pandas", "duckdb"):
            raise ValueError(f"engine {engine!r}: use 'pandas', 'duckdb' or 'auto'.")
        gx_results = (_run_gx(table, suite, con.sql(f"SELECT * FROM {scan}").df(), docs)
                      if engine == "pandas" else {})
        outcomes = []
        for i, e in enumerate(suite):
            if i in gx_results:
                res = gx_results[i].result or {}
                unexpected = res.get("unexpected_count")
                outcomes.append(ExpectationOutcome(
                    e, bool(gx_results[i].success), _observed(res),
                    int(unexpected) if isinstance(unexpected, (int, float)) else None))
                continue
            try:
                bad = con.execute(f"SELECT count(*) FROM "
                                  f"({rules.sql_for(e, ctx).replace('{batch}', scan)})").fetchall()[0][0]
            except duckdb.BinderException as err:  # a column the suite names is missing
                outcomes.append(ExpectationOutcome(e, False, json.dumps(str(err).splitlines()[0])))
                continue
            outcomes.append(ExpectationOutcome(e, bad == 0, json.dumps(bad), bad))
    finally:
        con.close()
    failed = [o.label for o in outcomes if not o.success]
    failed_errors = [o.label for o in outcomes if not o.success and o.expectation.severity == "error"]
    docs_path = data_docs_index()
    res = SuiteResult(table=table, success=not failed, rows=rows, version=version,
                      evaluated=len(outcomes), failed=failed, failed_errors=failed_errors,
                      docs_index=str(docs_path) if docs_path.exists() else None,
                      outcomes=outcomes, seconds=time.perf_counter() - started, engine=engine)
    if record:
        record_results(res, run_id, engine)
    return res


def prune_docs(name: str, keep: int) -> int:
    """Remove all but suite `name`'s newest `keep` validations from GX's result store and
    Data Docs; how many went. Every check rebuilds the Data Docs index, which reads every
    stored result: unpruned, a check cost ~2.5 ms more for each one ever stored, so after
    a year of daily runs (45 checks) each run would spend half an hour on its index.
    Every result also lands in gold.dq_results, which keeps them all."""
    root = get_settings().gx_root / "gx" / "uncommitted"
    removed = 0
    for base in (root / "validations" / name, root / "data_docs" / "local_site" / "validations" / name):
        # <run name>/<run time>/: GX's run times (20261202T063043.191230Z) sort as text.
        runs = sorted((p for p in base.glob("*/*") if p.is_dir()), key=lambda p: p.name)
        for old in runs[:max(len(runs) - keep, 0)]:
            shutil.rmtree(old, ignore_errors=True)
            removed += 1
    return removed


def _run_gx(table: str, suite: list[Expectation], df, docs: bool) -> dict[int, object]:
    """GX's own expectations of `suite` on a pandas batch, by their index in `suite`
    (medlake's rules run in DuckDB either way)."""
    gx, context = _context()
    name = table.replace(".", "__")
    source = context.data_sources.add_or_update_pandas("medlake_lake")
    asset = source.add_dataframe_asset(name=name)
    batch = asset.add_batch_definition_whole_dataframe("whole_table")
    # Each GX expectation carries its index in the suite, to pair results back up.
    items = [getattr(gx.expectations, e.type)(**e.kwargs, meta={"severity": e.severity, "index": i})
             for i, e in enumerate(suite) if e.type not in rules.RULES]
    gx_suite = context.suites.add_or_update(gx.ExpectationSuite(name=name, expectations=items))
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=gx_suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="data_docs")] if docs else []
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[validation], actions=actions))
    prune_docs(name, max(DOCS_KEEP - 1, 0))  # room for this one
    result = checkpoint.run(batch_parameters={"dataframe": df})
    outcome = next(iter(result.run_results.values()))
    return {(r.expectation_config.meta or {}).get("index"): r for r in outcome.results}


def record_results(res: SuiteResult, run_id: str, engine: str) -> None:
    """Append one row per expectation to gold.dq_results (a log: appends, never merges)."""
    from deltalake.exceptions import CommitFailedError

    now = datetime.now(timezone.utc)
    rows = [dict(run_id=run_id, table_name=res.table, delta_version=res.version,
                 expectation=o.expectation.type,
                 column_name=o.expectation.kwargs.get("column")
                 or ",".join(o.expectation.kwargs.get("column_list", [])) or None,
                 kwargs=json.dumps(o.expectation.kwargs, default=str)[:1000],
                 severity=o.expectation.severity, success=o.success,
                 observed_value=o.observed, unexpected_count=o.unexpected, rows=res.rows,
                 engine=engine, validated_at=now) for o in res.outcomes]
    data = pa.Table.from_pylist(rows, DQ_SCHEMA)
    for attempt in range(5):
        try:
            lake.append(DQ_RESULTS, data)
            return
        except CommitFailedError:  # checks of other tables appending at the same moment
            time.sleep(0.2 * 2 ** attempt)
    raise RuntimeError(f"could not append to {DQ_RESULTS} after 5 tries")


def latest_results(table: str) -> list[dict]:
    """The most recent validation of `table` from gold.dq_results."""
    return lake.read(DQ_RESULTS, "SELECT * FROM t WHERE table_name = ? AND validated_at = "
                     "(SELECT max(validated_at) FROM t WHERE table_name = ?) "
                     "ORDER BY severity, expectation", params=[table, table]).to_pylist()
    failed, failed_errors = [], []
    for r in outcome.results:
        if not r.success:
            label = f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column', '')})"
            failed.append(label)
            if (r.expectation_config.meta or {}).get("severity", "error") == "error":
                failed_errors.append(label)
    docs = data_docs_index()
    return SuiteResult(table=table, success=bool(outcome.success), rows=len(df),
                       version=lake.version(table), evaluated=len(outcome.results),
                       failed=failed, failed_errors=failed_errors, docs_index=str(docs) if docs.exists() else None)
