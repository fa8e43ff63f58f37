"""Run a suite from `quality.suites` on a lake table with Great Expectations 1.x.

The table is read from Delta into pandas (GX has no DuckDB source of its own), validated
through a Checkpoint whose action rebuilds the Data Docs under `MEDLAKE_HOME/gx/`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from medlake import lake
from medlake.config import get_settings
from quality.suites import SUITES


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


def data_docs_index() -> Path:
    """Where the Data Docs site's front page is (it exists once a suite has run)."""
    return get_settings().gx_root / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"


def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    root = get_settings().gx_root
    root.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(root))
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # Dagster logs are the progress report; GX's own bars would only add noise.
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, context


def run_suite(table: str) -> SuiteResult:
    gx, context = _context()
    name = table.replace(".", "__")
    df = lake.read(table).to_pandas()
    source = context.data_sources.add_or_update_pandas("medlake_lake")
    try:
        asset = source.get_asset(name)
    except LookupError:
        asset = source.add_dataframe_asset(name=name)
    try:
        batch = asset.get_batch_definition("whole_table")
    except KeyError:
        batch = asset.add_batch_definition_whole_dataframe("whole_table")
    suite = gx.ExpectationSuite(name=name, expectations=[
        getattr(gx.expectations, e.type)(**e.kwargs, meta={"severity": e.severity})
        for e in SUITES[table]])
    suite = context.suites.add_or_update(suite)
    validation = context.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=name, data=batch, suite=suite))
    checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
        name=name, validation_definitions=[validation],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")]))
    result = checkpoint.run(batch_parameters={"dataframe": df})
    outcome = next(iter(result.run_results.values()))
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
