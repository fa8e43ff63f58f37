"""Great Expectations suites as Dagster asset checks. GX is imported only when a check
runs, never when the code location loads."""
from __future__ import annotations

import dagster as dg

from quality.suites import SUITES


def gx_check(table: str) -> dg.AssetChecksDefinition:
    layer, name = table.split(".")

    @dg.asset_check(asset=dg.AssetKey([layer, name]), name="great_expectations",
                    blocking=True, description=f"Great Expectations suite for {table} "
                    f"(quality/suites/{table}.json). A failed expectation of severity "
                    "error stops downstream assets; one of severity warn is reported only.")
    def _check() -> dg.AssetCheckResult:
        from quality.gx_runner import run_suite

        r = run_suite(table)
        return dg.AssetCheckResult(
            passed=r.success,
            # Dagster blocks downstream only on ERROR, so the worst failed severity decides.
            severity=(dg.AssetCheckSeverity.ERROR if r.failed_errors or r.success
                      else dg.AssetCheckSeverity.WARN),
            metadata={"rows_validated": r.rows, "delta_version": r.version if r.version is not None else -1,
                      "expectations": r.evaluated, "failed": ", ".join(r.failed) or "none",
                      "data_docs": dg.MetadataValue.path(r.docs_index or "")},
        )

    _check.__name__ = f"gx_{layer}_{name}"
    return _check


gx_checks = [gx_check(table) for table in SUITES]
