"""Is a lake whole? Checks for the concurrency and crash (chaos) tests and benches.

A lake is whole when every Delta table loads at its latest version, every data file
that version references exists and reads, no key is stored twice, and its content is
what a clean run stores; the lake may be local or on object storage (`s3://`). Content
is compared without the columns that legitimately differ between two correct runs: when
each row was ingested and by which batch, and, for a key that several files carry, which
of them supplied the stored row.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import duckdb
from deltalake import DeltaTable

from medlake import lake, storage
from medlake.config import is_remote

# Columns that differ between two correct runs (see the module docstring); a table's own
# keys among them (the log's source_uri, say) are compared all the same.
PROVENANCE = ("source_uri", "source_sha256", "batch_id", "ingested_at", "detected_at")


def bronze_keys() -> dict[str, list[str]]:
    """Every bronze table's key columns: the modalities', the quarantine's and the log's."""
    from assets.ehr.fhir import FHIR
    from assets.genomics.vcf import VCF
    from assets.imaging.dicom import DICOM
    from medlake.ingest import INGEST_LOG, QUARANTINE

    keys = {spec.name: spec.keys for m in (FHIR, DICOM, VCF) for spec in m.tables}
    keys[QUARANTINE] = keys[INGEST_LOG] = ["source_uri", "source_sha256"]
    return keys


def tables(layers: tuple[str, ...] = ("bronze", "silver", "gold")) -> list[str]:
    """The tables of `layers`, including any folder that looks like one but does not load
    (a `_delta_log` left by a killed create), so that `problems` reports it."""
    out = []
    for layer in layers:
        if is_remote(lake.uri(f"{layer}.x")):
            out += lake.list_tables(layer)  # no empty folders there: a prefix has a file
            continue
        root = Path(lake.uri(f"{layer}.x")).parent
        if root.is_dir():
            out += sorted(f"{layer}.{p.name}" for p in root.iterdir() if (p / "_delta_log").is_dir())
    return out


def missing_files(table_uri: str, file_uris: list[str]) -> list[str]:
    """Those of a table's data files `file_uris` that do not exist: on object storage
    from one listing of the table's prefix, not a request per file."""
    if not is_remote(table_uri):
        return [f for f in file_uris if not storage.local_path(f).is_file()]
    stored = set(storage.filesystem().find(storage.strip(table_uri)))
    return [f for f in file_uris if unquote(storage.strip(f)) not in stored]


def problems(table: str, keys: list[str] | None = None) -> list[str]:
    """What is wrong with one table, as sentences (empty: nothing): it does not load, a file
    its latest version references is missing or unreadable, or a key is stored twice."""
    try:
        dt = DeltaTable(lake.uri(table), storage_options=lake.options())
    except Exception as e:
        return [f"{table}: does not load at its latest version ({type(e).__name__}: {e})"]
    out = []
    missing = missing_files(lake.uri(table), dt.file_uris())
    if missing:
        out.append(f"{table} v{dt.version()}: {len(missing)} referenced files missing, e.g. {missing[0]}")
        return out
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM {lake.scan_sql(dt)}")
        con.execute("SELECT count(*) FROM t").fetchall()  # reads every file's footer
        if keys:
            cols = ", ".join(f'"{k}"' for k in keys)
            twice = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM t GROUP BY ALL "
                                "HAVING count(*) > 1)").fetchall()[0][0]
            if twice:
                out.append(f"{table}: {twice} keys ({', '.join(keys)}) stored more than once")
    except Exception as e:
        out.append(f"{table} v{dt.version()}: unreadable ({type(e).__name__}: {e})")
    finally:
        con.close()
    return out


def content(table: str, keys: list[str] | None = None) -> tuple[int, str]:
    """(rows, fingerprint) of a table's latest version without its provenance columns
    (PROVENANCE, keys excepted): equal for two correct runs over the same files."""
    dt = lake.open_table(table)
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM {lake.scan_sql(dt)}")
        drop = [c for c in PROVENANCE if c not in (keys or [])
                and c in lake.arrow_schema(dt).names]
        rel = f"(SELECT * EXCLUDE ({', '.join(drop)}) FROM t)" if drop else "t"
        fp = lake.fingerprint(con, rel)
        return con.execute("SELECT count(*) FROM t").fetchall()[0][0], fp
    finally:
        con.close()


def snapshot(layers: tuple[str, ...] = ("bronze", "silver", "gold")) -> dict[str, tuple[int, str]]:
    """`content` of every table in `layers`, by name."""
    keys = bronze_keys()
    return {t: content(t, keys.get(t)) for t in tables(layers)}


def check(layers: tuple[str, ...] = ("bronze", "silver", "gold"),
          reference: dict[str, tuple[int, str]] | None = None) -> list[str]:
    """Every problem of the lake's tables in `layers` (bronze keys checked for
    duplicates), and, given a clean run's `snapshot`, every table whose rows or content
    differ from it or that one of the two lacks. Empty: the lake is whole."""
    keys = bronze_keys()
    out, names = [], tables(layers)
    for t in names:
        out += problems(t, keys.get(t))
    if reference is None or out:
        return out
    got = {t: content(t, keys.get(t)) for t in names}
    for t in sorted(set(got) | set(reference)):
        if t not in got:
            out.append(f"{t}: missing (the clean run has {reference[t][0]} rows)")
        elif t not in reference:
            out.append(f"{t}: not in the clean run")
        elif got[t] != reference[t]:
            out.append(f"{t}: {got[t][0]} rows, the clean run {reference[t][0]}"
                       + ("" if got[t][0] != reference[t][0] else " (same count, other content)"))
    return out
