"""dbt-duckdb plugin: Delta tables in and out, and the privacy functions in SQL.

- `configure_connection`: each bronze Delta table becomes a view `bronze.<table>` over
  the files of its current version, fixed when dbt opens its connection, so every
  model in one dbt invocation reads the same snapshot (and dbt sources need no plugin).
  It also registers `person_key`, `pseudonym`, `date_shift_days`, `derived_uid` and
  `scrub_text`, so
  SQL models de-identify with the same code as the Python assets. Last, every SQL-on-FHIR
  ViewDefinition in `dbt_project/views/*.json` is compiled to DuckDB SQL over
  `bronze.fhir_resources` and created as a view `sof.<name>` (the dbt source `sof`),
  which the silver models de-identify.
- `store`: an `external` model is committed as a Delta table `<schema>.<alias>`, but only
  when its content changed, so a rebuild on unchanged input leaves versions alone.

Wherever the lake is (MEDLAKE_LAKE_URI), both go through `medlake.lake`, which opens
tables with the lake's storage options and reads an object store's data files from its
local cache; dbt's own Parquet stays local (dbt_staging).

Wired in `dbt_project/profiles.yml` as `{module: medlake.dbt_plugin, alias: medlake}`.
"""
from __future__ import annotations

import json
from pathlib import Path

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin

from medlake import lake, privacy
from medlake.config import get_settings


VIEWS_DIR = Path(__file__).resolve().parents[1] / "dbt_project" / "views"
SOF_CARRY = ("patient_ref", "batch_id", "source_sha256")

# bronze.fhir_resources before anything landed: the ViewDefinitions still compile and
# select nothing, so a first `dbt build` on an empty lake succeeds.
_EMPTY_FHIR = ("SELECT NULL::VARCHAR AS resource_type, NULL::VARCHAR AS resource_id, "
               "NULL::VARCHAR AS patient_ref, NULL::TIMESTAMPTZ AS last_updated, "
               "NULL::VARCHAR AS resource, NULL::VARCHAR AS source_uri, "
               "NULL::VARCHAR AS source_sha256, NULL::VARCHAR AS batch_id, "
               "NULL::TIMESTAMPTZ AS ingested_at WHERE false")


def create_sof_views(cur: duckdb.DuckDBPyConnection, folder: Path = VIEWS_DIR) -> list[str]:
    """Compile each ViewDefinition in `folder` into a DuckDB view `sof.<name>`, whose rows
    start with the bronze columns in SOF_CARRY."""
    from medlake.sof import compile_view

    names = []
    cur.execute("CREATE SCHEMA IF NOT EXISTS sof").fetchall()
    for path in sorted(folder.glob("*.json")):
        try:
            # Provenance and the compartment's patient ride along on every row.
            sql = compile_view(json.loads(path.read_text()), source="bronze.fhir_resources",
                               carry=SOF_CARRY)
        except Exception as e:
            raise ValueError(f"ViewDefinition {path.name} does not compile ({e}); fix the "
                             "JSON (try it with `medlake sof run`).") from e
        cur.execute(f"CREATE OR REPLACE VIEW sof.{path.stem} AS {sql}").fetchall()
        names.append(path.stem)
    return names


def _scrub(text, known_json, days):
    known = json.loads(known_json) if known_json else []
    return privacy.scrub_text(text, known, days or 0)


class Plugin(BasePlugin):
    def initialize(self, plugin_config):
        # dbt writes each model's Parquet here before `store` commits it to Delta.
        get_settings().dbt_staging.mkdir(parents=True, exist_ok=True)

    def configure_connection(self, conn: duckdb.DuckDBPyConnection):
        from duckdb.sqltypes import INTEGER, VARCHAR

        functions = {
            "person_key": (lambda mrn: privacy.person_key(mrn), [VARCHAR], VARCHAR),
            "pseudonym": (lambda kind, v: privacy.pseudonym(kind, v), [VARCHAR, VARCHAR], VARCHAR),
            "date_shift_days": (lambda mrn: privacy.date_shift_days(mrn), [VARCHAR], INTEGER),
            "derived_uid": (lambda uid: privacy.derived_uid(uid), [VARCHAR], VARCHAR),
            "scrub_text": (_scrub, [VARCHAR, VARCHAR, INTEGER], VARCHAR),
        }
        for name, (fn, args, returns) in functions.items():
            try:
                conn.create_function(name, fn, args, returns, null_handling="special",
                                     side_effects=False)
            except duckdb.CatalogException:
                pass  # dbt opened this database before in this process: already there
        # A cursor of its own: DuckDB 2 refuses further work on a connection that
        # still holds an unconsumed result, and dbt reuses `conn`.
        cur = conn.cursor()
        try:
            # dagster-dbt reads column metadata through a read-only connection; the views
            # the run's own connection made are already there.
            if cur.execute("SELECT readonly FROM duckdb_databases() "
                           "WHERE database_name = current_database()").fetchall()[0][0]:
                return
            cur.execute("CREATE SCHEMA IF NOT EXISTS bronze").fetchall()
            for table in lake.list_tables("bronze"):
                scan = lake.scan_sql(lake.open_table(table))
                cur.execute(f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {scan}").fetchall()
            if "bronze.fhir_resources" not in lake.list_tables("bronze"):
                cur.execute(f"CREATE OR REPLACE VIEW bronze.fhir_resources AS {_EMPTY_FHIR}").fetchall()
            create_sof_views(cur)
        finally:
            cur.close()

    def store(self, target_config):
        relation = target_config.relation
        table = f"{relation.schema}.{relation.identifier}"
        con = duckdb.connect()
        try:
            src = f"read_parquet('{target_config.location.path}')"
            # dbt-duckdb writes one all-NULL row for an empty model; drop it.
            cols = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
            not_all_null = " OR ".join(f'"{c}" IS NOT NULL' for c in cols)
            con.execute(f"CREATE VIEW model AS SELECT * FROM {src} WHERE {not_all_null}")
            fp = lake.fingerprint(con, "model")
            data = con.sql("SELECT * FROM model").to_arrow_table()
        finally:
            con.close()
        lake.replace_if_changed(table, data, fp)
