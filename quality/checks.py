"""Great Expectations suites as Dagster asset checks. GX is imported only when a check
runs, never when the code location loads."""
from __future__ import annotations

import dagster as dg

from quality.suites import SUITES


def gx_check(table: str) -> dg.AssetChecksDefinition:
    layer, name = table.split(".")

    @dg.asset_check(asset=dg.AssetKey([layer, name]), name="great_expectations",
                    blocking=True, description=f"Great Expectations suite for {table} "
                    "(see quality/suites.py); failures stop downstream assets.")
    def _check() -> dg.AssetCheckResult:
        from quality.gx_runner import run_suite

        r = run_suite(table)
        return dg.AssetCheckResult(
            passed=r.success,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"rows_validated": r.rows, "delta_version": r.version if r.version is not None else -1,
                      "expectations": r.evaluated, "failed": ", ".join(r.failed) or "none",
                      "data_docs": dg.MetadataValue.path(r.docs_index or "")},
        )

    _check.__name__ = f"gx_{layer}_{name}"
    return _check


gx_checks = [gx_check(table) for table in SUITES]
