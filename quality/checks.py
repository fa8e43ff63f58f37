"""Great Expectations suites as Dagster asset checks. GX is imported only when a check
runs, never when the code location loads."""
import dagster as dg

from quality.suites import SUITES

# Tables that are no Dagster asset of their own are validated beside the asset that
# writes or reads them: the ingest ledger with the quarantine report, the RAG audit
# log with the embeddings the answers come from.
HOSTED = {
    "bronze.ingest_log": dg.AssetKey(["bronze", "quarantine"]),
    "gold.rag_audit": dg.AssetKey(["vectors", "clinical_chunks"]),
}


def check_result(r) -> dg.AssetCheckResult:
    """A suite result as a check result: ERROR (blocking) only when an expectation of
    severity error failed; WARN when only warnings did."""
    return dg.AssetCheckResult(
        passed=r.success,
        severity=(dg.AssetCheckSeverity.ERROR if r.failed_errors or r.success
                  else dg.AssetCheckSeverity.WARN),
        metadata={"rows_validated": r.rows,
                  "delta_version": r.version if r.version is not None else -1,
                  "engine": r.engine, "expectations": r.evaluated,
                  "failed_errors": ", ".join(r.failed_errors) or "none",
                  "failed_warnings": ", ".join(f for f in r.failed if f not in r.failed_errors) or "none",
                  "results_table": "gold.dq_results",
                  "data_docs": dg.MetadataValue.path(r.docs_index or "")})


def gx_check(table: str) -> dg.AssetChecksDefinition:
    layer, name = table.split(".")
    asset = HOSTED.get(table, dg.AssetKey([layer, name]))
    check_name = "great_expectations" if table not in HOSTED else f"great_expectations_{name}"

    @dg.asset_check(asset=asset, name=check_name, blocking=True,
                    description=f"Great Expectations suite for {table} "
                    f"(quality/suites/{table}.json), plus the rules every table gets "
                    "(person_key integrity, row-count drift). A failed expectation of "
                    "severity error stops downstream assets; one of severity warn is "
                    "reported only. Every result is appended to gold.dq_results.")
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from medlake import lake
        from quality.gx_runner import run_suite

        if table in HOSTED and lake.open_table(table) is None:
            # A log nobody has written to yet (no question asked so far) is not a fault.
            return dg.AssetCheckResult(passed=True, metadata={"rows_validated": 0,
                                                              "note": f"{table} does not exist yet"})
        return check_result(run_suite(table, run_id=context.run.run_id))

    _check.__name__ = f"gx_{layer}_{name}"
    return _check


def gx_checks_for(asset_keys) -> list[dg.AssetChecksDefinition]:
    """One check per suite whose table (or host) is an asset of this code location; a
    suite for a table another branch has not delivered yet is skipped, not an error."""
    keys = set(asset_keys)
    return [gx_check(t) for t in SUITES
            if HOSTED.get(t, dg.AssetKey(t.split("."))) in keys]


def phi_guard(silver_and_gold: list[dg.AssetKey]) -> dg.AssetChecksDefinition:
    """The PHI leak guard, run after the embeddings and every silver and gold table."""

    @dg.asset_check(asset=dg.AssetKey(["vectors", "clinical_chunks"]), name="phi_leak_guard",
                    blocking=True, additional_deps=silver_and_gold,
                    description="Scans every silver and gold table's string columns, the "
                    "embedded chunk text and gold.rag_audit for any identifier value known "
                    "in bronze (names, MRN, SSN, phone, address, birth date, DICOM PHI). A "
                    "hit fails with ERROR and names table, column and kind, never the value.")
    def _guard(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        from quality.phi import scan

        leaks, stats = scan()
        for leak in leaks:
            context.log.error(f"PHI leak: {leak}. Fix the de-identification of that column "
                              "and rebuild it; the value is in bronze.")
        return dg.AssetCheckResult(
            passed=not leaks, severity=dg.AssetCheckSeverity.ERROR,
            metadata={**stats, "leaks": len(leaks),
                      "where": "; ".join(map(str, leaks)) or "none"})

    return _guard
