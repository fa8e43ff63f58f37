"""dbt-duckdb plugin: Delta tables in and out, and the privacy functions in SQL.

- `configure_connection`: each bronze Delta table becomes a view `bronze.<table>` over
  the files of its current version, fixed when dbt opens its connection, so every
  model in one dbt invocation reads the same snapshot (and dbt sources need no plugin).
  It also registers `person_key`, `pseudonym`, `date_shift_days`, `derived_uid` and
  `scrub_text`, so
  SQL models de-identify with the same code as the Python assets.
- `store`: an `external` model is committed as a Delta table `<schema>.<alias>`, but only
  when its content changed, so a rebuild on unchanged input leaves versions alone.

Wired in `dbt_project/profiles.yml` as `{module: medlake.dbt_plugin, alias: medlake}`.
"""
from __future__ import annotations

import json

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin

from medlake import lake, privacy
from medlake.config import get_settings


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
