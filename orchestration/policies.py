"""Run policies shared by the writing assets: retries for transient errors, and the pools
that keep two runs from writing the same tables at once.

Each pool covers a set of tables no other pool writes, and dagster.yaml (written by
`medlake.pipeline.ensure_dagster_home`) limits every pool to one step at a time, except
bronze's: it gets MEDLAKE_BRONZE_WRITERS slots (default 1), the number of ingests the
bronze writes are prepared for (medlake.ingest: above 1, every write is a MERGE whose
conflicts are retried).
"""
import dagster as dg

# Transient failures (a Delta commit race that outlived lake.merge's own retries, a file
# system hiccup, the embedder running out of memory under load) usually pass; bad input
# never raises (it is quarantined), so a retry never repeats a data error.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL,
                                 jitter=dg.Jitter.PLUS_MINUS)

POOL_BRONZE = "lake_bronze"  # bronze.* incl. quarantine and ingest_log (every modality writes them)
POOL_DBT = "lake_silver_gold"  # silver.* and gold.*, committed by dbt's medlake plugin
POOL_VECTORS = "lake_vectors"  # the LanceDB tables
POOLS = (POOL_BRONZE, POOL_DBT, POOL_VECTORS)


def follows_upstream() -> dg.AutomationCondition:
    """Declarative Automation for everything downstream of bronze: Dagster's `eager()`
    (run when any upstream updated, not while one is running), minus its wait for missing
    upstream partitions, since a batch of one modality never fills the other modalities'
    bronze partitions."""
    return (dg.AutomationCondition.eager()
            .without(~dg.AutomationCondition.any_deps_missing())
            .with_label("eager (follows upstream updates)"))
