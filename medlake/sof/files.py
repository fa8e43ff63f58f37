"""Run a ViewDefinition over FHIR files (NDJSON, a Bundle, or one resource per file)
and write the rows as CSV, NDJSON or Parquet: the `medlake sof run` command."""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import duckdb

from medlake.sof import compile_view
from medlake.sof.errors import raised_by_view
from medlake.sof.paths import sql_string

TABLE = "fhir_resources"
FORMATS = {"csv": "FORMAT csv, HEADER true", "ndjson": "FORMAT json",
           "parquet": "FORMAT parquet"}


def load_files(con: duckdb.DuckDBPyConnection, paths: list[Path]) -> int:
    """Load FHIR JSON files into table fhir_resources (bronze shape), unpacking Bundle
    entries; DuckDB reads the files (gzip too), not Python. Returns the row count."""
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise ValueError(f"no such file: {', '.join(missing)}")
    files = "[" + ", ".join(sql_string(str(p)) for p in paths) + "]"
    try:
        con.execute(f"""
            CREATE OR REPLACE TABLE {TABLE} AS
            WITH docs AS (SELECT json AS doc FROM read_json_objects({files}, format = 'auto'))
            SELECT r ->> 'resourceType' AS resource_type, r ->> 'id' AS resource_id,
                   CAST(r AS VARCHAR) AS resource
            FROM (SELECT doc AS r FROM docs WHERE doc ->> 'resourceType' <> 'Bundle'
                  UNION ALL
                  SELECT unnest(json_extract(doc, '$.entry[*].resource')) FROM docs
                  WHERE doc ->> 'resourceType' = 'Bundle')""")
    except duckdb.Error as e:
        first_line = str(e).splitlines()[0]
        raise ValueError(f"could not read FHIR JSON from {', '.join(map(str, paths))} "
                         f"({first_line}); give NDJSON, a Bundle or resource JSON") from e
    return con.sql(f"SELECT count(*) FROM {TABLE}").fetchall()[0][0]


def run_to_file(view: dict, resources: list[Path], fmt: str, out: Path | None) -> int:
    """Write the view's rows to `out` (stdout when None; not for parquet). Returns the
    number of rows written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if out is None and fmt == "parquet":
        raise ValueError("parquet is binary: give an output file with -o")
    sql = compile_view(view, TABLE)
    con = duckdb.connect()
    load_files(con, resources)
    with tempfile.TemporaryDirectory() as tmp:
        target = out or Path(tmp) / f"rows.{fmt}"
        try:
            n = con.execute(f"COPY ({sql}) TO {sql_string(str(target))} "
                            f"({FORMATS[fmt]})").fetchone()[0]
        except duckdb.Error as e:
            raise (raised_by_view(e, view) or e) from e
        if out is None:
            with open(target, "rb") as f:
                sys.stdout.flush()
                shutil.copyfileobj(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
    return n
