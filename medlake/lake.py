"""Delta Lake reads and writes, the only code that touches table storage.

Reads go through DuckDB over the table's Parquet files rather than
`DeltaTable.to_pyarrow_*`, which can abort the process at exit (STACK_NOTES).
Writes are MERGEs on natural keys, so re-running on the same input commits nothing.

The lake is a folder or an s3:// prefix (MEDLAKE_LAKE_URI): every table is opened with
`Settings.storage_options` (None locally), and DuckDB reads an object store's data files
from a local read-through cache (`storage.local_files`). Nothing else differs.
"""
from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable, WriterProperties, write_deltalake
from deltalake.transaction import AddAction
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from medlake import storage
from medlake.config import get_settings, is_remote

FINGERPRINT = "medlake.content_fingerprint"
log = logging.getLogger(__name__)

# Commit conflicts retried in this process, per table (`commit_retries`): concurrent
# writers are judged by whether their conflicts were caught and retried, not by time.
_retries: dict[str, int] = {}
_retries_lock = threading.Lock()
BACKOFF_S = 0.1  # the first retry's wait; doubled per attempt, capped, with jitter
BACKOFF_CAP_S = 4.0


def commit_retries() -> dict[str, int]:
    """Commit conflicts this process has retried so far, per table."""
    with _retries_lock:
        return dict(_retries)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt` (0-based): exponential, capped, and jittered
    (half to all of it), so writers that collided do not collide again in lockstep."""
    return min(BACKOFF_CAP_S, BACKOFF_S * 2 ** attempt) * random.uniform(0.5, 1.0)


def _retrying(table: str, attempt: int, retries: int, error: Exception) -> None:
    """Count and log a commit conflict, and wait before the retry; re-raise after the last."""
    if attempt == retries - 1:
        raise error
    with _retries_lock:
        _retries[table] = _retries.get(table, 0) + 1
    wait = backoff(attempt)
    log.info("commit conflict on %s (attempt %d of %d), retrying in %.2f s: %s",
             table, attempt + 1, retries, wait, str(error).splitlines()[0][:200])
    time.sleep(wait)


def uri(table: str) -> str:
    return get_settings().table_uri(table)


def options() -> dict[str, str] | None:
    """delta-rs storage options for the lake's tables (None for a local lake)."""
    settings = get_settings()
    return settings.storage_options(settings.lake_uri)


def open_table(table: str, version: int | None = None) -> DeltaTable | None:
    """The table (at `version` when given), or None when it does not exist yet."""
    try:
        return DeltaTable(uri(table), version=version, storage_options=options())
    except TableNotFoundError:
        return None


def list_tables(layer: str) -> list[str]:
    """Delta tables that exist in a layer: folders, or on object storage prefixes, that
    hold a `_delta_log`. A local folder whose log holds no commit yet (a create killed
    half-way) is not one: opening it would fail, and the next write creates it."""
    root = get_settings().table_uri(f"{layer}.x").rsplit("/", 1)[0]
    if is_remote(root):
        found = storage.filesystem().glob(storage.strip(root) + "/*/_delta_log")
        return sorted(f"{layer}.{p.rstrip('/').split('/')[-2]}" for p in found)
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(f"{layer}.{p.name}" for p in root.iterdir() if _committed(p / "_delta_log"))


def _committed(log: Path) -> bool:
    """Whether a Delta log holds a commit or checkpoint (numbered files; a write in
    progress or killed leaves only temporary ones)."""
    return log.is_dir() and any(f.name[:1].isdigit() for f in log.iterdir())


def version(table: str) -> int | None:
    dt = open_table(table)
    return None if dt is None else dt.version()


def arrow_schema(dt: DeltaTable) -> pa.Schema:
    return pa.schema(dt.schema().to_arrow())


def scan_sql(dt: DeltaTable, files: list[str] | None = None) -> str:
    """A DuckDB table expression for the table's current files (empty tables too), or
    for just `files` of it when given."""
    files = dt.file_uris() if files is None else files
    if files:
        files = storage.local_files(files)  # on object storage: local copies
        # Delta keeps partition values in the paths (`chrom=1/`), not in the files: read
        # them back with the table's types, not DuckDB's guesses (`1` is not a BIGINT).
        parts = dt.metadata().partition_columns
        schema = arrow_schema(dt)
        hive = ", ".join(f"'{c}': '{_duck_type(schema.field(c).type)}'" for c in parts)
        extra = f", hive_partitioning=true, hive_types={{{hive}}}" if parts else ""
        return f"read_parquet({files!r}, union_by_name=true{extra})"
    cols = ", ".join(
        f'NULL::{_duck_type(f.type)} AS "{f.name}"' for f in arrow_schema(dt)
    )
    return f"(SELECT {cols} LIMIT 0)"


def _duck_type(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_integer(t):
        return "BIGINT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{_duck_type(t.value_type)}[]"
    return "VARCHAR"


def read(table: str, sql: str = "SELECT * FROM t", params: list | None = None,
         version: int | None = None) -> pa.Table:
    """Run `sql` with the table bound as `t` (at `version` when given, for time travel);
    an empty result for a missing table."""
    dt = open_table(table, version)
    if dt is None:
        return pa.table({})
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM {scan_sql(dt)}")
        return con.sql(sql, params=params).to_arrow_table()
    finally:
        con.close()


def ensure(table: str, schema: pa.Schema, partition_by: list[str] | None = None) -> DeltaTable:
    """Create an empty table with `schema` (partitioned by `partition_by`, e.g. chromosome,
    so a MERGE touches only the partitions its rows belong to) if it does not exist yet."""
    dt = open_table(table)
    if dt is not None:
        return dt
    try:
        # Version 0 or nothing: with commit retries (delta-rs's default) a writer that
        # lost the race to create the table commits its create again as version 1.
        write_deltalake(uri(table), schema.empty_table(), mode="error", partition_by=partition_by,
                        storage_options=options(),
                        commit_properties=CommitProperties(max_commit_retries=0))
    except Exception:
        # Another writer created it between our check and our write: use theirs.
        pass
    return DeltaTable(uri(table), storage_options=options())


def append(table: str, data: pa.Table, **kwargs) -> None:
    """Append `data` to a log-like table (created on first use); `kwargs` go to
    `write_deltalake` (e.g. schema_mode="merge").

    Such a table takes a commit per event (a check's results, an answer), and opening it
    reads every commit since its last checkpoint: one request each on object storage,
    where replaying up to 100 of them made each append of gold.dq_results slower than the
    check itself. A new one is therefore checkpointed every 10 commits, not 100."""
    write_deltalake(uri(table), data, mode="append", storage_options=options(),
                    configuration={"delta.checkpointInterval": "10"}, **kwargs)


@dataclass
class WriteResult:
    table: str
    version: int
    inserted: int = 0
    updated: int = 0
    appended: bool = False  # written without a MERGE: none of the keys was stored

    @property
    def changed(self) -> bool:
        return bool(self.inserted or self.updated)


def merge(table: str, data: pa.Table, keys: list[str], update_when: str | None = None,
          retries: int = 10, *, sole_writer: bool = False,
          stored_files: list[str] | None = None,
          writer_properties: WriterProperties | ArrowWriter | None = None,
          handle: DeltaTable | None = None) -> WriteResult:
    """Upsert `data` on `keys`. Rows that match and satisfy `update_when` (SQL over
    `s` source and `t` target) replace the target row; new keys are inserted.

    A merge that changes nothing commits nothing, which is what makes assets
    idempotent. A commit that conflicts with a concurrent one is retried from a fresh
    snapshot, with backoff and jitter (`backoff`), up to `retries` attempts in all.
    delta-rs rejects a MERGE when a commit made since its snapshot added files its keys'
    range could be in, or removed files it read (tests/test_concurrency.py proves it for
    the key shapes used here), so two writers MERGEing one new key store it once: the
    retry finds the other's row and matches it.

    `sole_writer`: the caller guarantees no other process writes this table meanwhile
    (bronze ingestion with MEDLAKE_BRONZE_WRITERS=1, serialized by its Dagster pool).
    Then a batch none of whose keys is stored yet (a first load, a new file: the usual
    case) is appended, which writes the same rows as the MERGE without its join. An
    append reads nothing, so delta-rs never rejects it over a key another writer
    committed after the probe (tests/test_concurrency.py): two writers appending one key
    would both store it, hence the guarantee.
    `stored_files`: the table's files that can hold any of `data`'s keys, when the caller
    knows the others cannot (default: all); only these are probed.

    `writer_properties`: how the new Parquet files are encoded (codec, dictionaries);
    delta-rs's defaults when not given. An `ArrowWriter` has appends written by
    pyarrow's Parquet writer instead (a MERGE then uses delta-rs's defaults).

    `handle`: the table, already open and current (a sole writer keeps one per table:
    opening a table replays its log, ~10 ms that hold the GIL); kept current here.
    """
    dt = handle if handle is not None else ensure(table, _plain_schema(data.schema))
    if data.num_rows == 0:
        return WriteResult(table, dt.version())
    if sole_writer and not _holds_any(dt, data, keys, stored_files):
        # Keys are unique in `data` (callers dedupe), as a MERGE requires too. A run
        # killed after the append is re-run through a MERGE: its keys are then stored.
        if isinstance(writer_properties, ArrowWriter):
            writer_properties.append(dt, data)
        else:
            write_deltalake(dt, decoded(data), mode="append", writer_properties=writer_properties)
        return WriteResult(table, dt.version(), data.num_rows, appended=True)
    data = decoded(data)
    if isinstance(writer_properties, ArrowWriter):
        writer_properties = None
    on = " AND ".join(f't."{k}" = s."{k}"' for k in keys)
    for attempt in range(retries):
        try:
            # Not streamed: delta-rs then derives partition and file pruning from the
            # source's values, so a MERGE reads only the target files its keys can be in.
            m = dt.merge(data, predicate=on, source_alias="s", target_alias="t", streamed_exec=False,
                         writer_properties=writer_properties)
            if update_when:
                m = m.when_matched_update_all(predicate=update_when)
            metrics = m.when_not_matched_insert_all().execute()
            return WriteResult(table, dt.version(),  # the merge moved `dt` to its commit
                               metrics.get("num_target_rows_inserted", 0),
                               metrics.get("num_target_rows_updated", 0))
        except CommitFailedError as e:
            _retrying(table, attempt, retries, e)
            dt.update_incremental()
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class ArrowWriter:
    """Appends written as Parquet by pyarrow and committed as Delta add actions, with
    `options` for `pyarrow.parquet.write_table` (codec, dictionary and statistics per
    column). For wide batches with list columns it costs a third of delta-rs's writer
    (bench/vcf.py). Local tables with plain partition values only; anything else falls
    back to delta-rs (an object store among them: the local file writes and the
    statistics read back need a filesystem). Files carry Delta statistics for their
    primitive columns."""
    options: dict = field(default_factory=dict)
    # Partitions' files written side by side (pyarrow releases the GIL): a batch written
    # while nothing else runs (a file's last) then takes a fraction of the time.
    threads: int = 1

    def append(self, dt: DeltaTable, data: pa.Table) -> None:
        parts = dt.metadata().partition_columns
        root = Path(dt.table_uri.removeprefix("file://"))
        local = not is_remote(dt.table_uri) and root.is_dir()
        groups = _partition_runs(data, parts) if local else None
        if groups is None:
            write_deltalake(dt, decoded(data), mode="append")
            return

        def write(group: tuple[tuple, pa.Table]) -> AddAction:
            values, rows = group
            rel = "/".join(f"{c}={v}" for c, v in zip(parts, values))
            rel = (rel + "/" if rel else "") + f"part-00000-{uuid.uuid4()}-c000.parquet"
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            body = rows.drop_columns(parts) if parts else rows
            pq.write_table(body, target, store_schema=False, **self.options)
            st = target.stat()
            return AddAction(rel, st.st_size, dict(zip(parts, values)), st.st_mtime_ns // 1_000_000,
                             True, _delta_stats(pq.read_metadata(target), body.num_rows))

        if self.threads > 1 and len(groups) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                actions = list(pool.map(write, groups))
        else:
            actions = [write(g) for g in groups]
        dt.create_write_transaction(actions, "append", arrow_schema(dt), parts)
        dt.update_incremental()


def _plain_type(kind: pa.DataType) -> pa.DataType:
    return kind.value_type if pa.types.is_dictionary(kind) else kind


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain_type(f.type), f.nullable, f.metadata) for f in schema],
                     metadata=schema.metadata)


def decoded(data: pa.Table) -> pa.Table:
    """`data` with its dictionary-encoded columns spelt out (delta-rs and DuckDB's key
    probes take plain ones); `data` itself when it has none."""
    if not any(pa.types.is_dictionary(f.type) for f in data.schema):
        return data
    return data.cast(_plain_schema(data.schema))


_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]*")


def _partition_runs(data: pa.Table, parts: list[str]) -> list[tuple[tuple, pa.Table]] | None:
    """The rows as (partition values, rows) groups, slices of `data` when each partition's
    rows are contiguous (sorted input, the usual case), else filtered out. None when a
    value would need escaping in a path (or is null): delta-rs writes those."""
    if not parts:
        return [((), data)]
    n = data.num_rows
    if n == 0:
        return []
    columns = [data.column(c) for c in parts]
    if any(c.null_count or not pa.types.is_string(_plain_type(c.type)) for c in columns):
        return None
    # Where any partition value changes from one row to the next: a comparison of
    # neighbours (of a dictionary column's indexes), cheaper than hashing every value.
    change = np.zeros(n - 1, bool)
    for c in columns:
        if pa.types.is_dictionary(c.type):
            codes = c.combine_chunks().indices.to_numpy(zero_copy_only=False)
            change |= codes[1:] != codes[:-1]
        else:
            change |= pc.not_equal(c.slice(1), c.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    bounds = np.concatenate([[0], np.flatnonzero(change) + 1, [n]])
    runs = [(tuple(c[int(a)].as_py() for c in columns), int(a), int(b))
            for a, b in zip(bounds[:-1], bounds[1:])]
    if not all(_PLAIN_VALUE.fullmatch(v) for values, _, _ in runs for v in values):
        return None
    if len({values for values, _, _ in runs}) == len(runs):  # one run per partition
        return [(values, data.slice(a, b - a)) for values, a, b in runs]
    out = []
    columns = [c.cast(_plain_type(c.type)) for c in columns]
    for values in dict.fromkeys(values for values, _, _ in runs):
        mask = None
        for c, v in zip(columns, values):
            m = pc.equal(c, v)
            mask = m if mask is None else pc.and_(mask, m)
        out.append((values, data.filter(mask)))
    return out


def _delta_stats(meta: pq.FileMetaData, rows: int) -> str:
    """Delta's per-file statistics from the Parquet footer: row count, and min, max and
    null count of the top-level primitive columns whose statistics were written
    (timestamps: null counts only)."""
    lo, hi, nulls = {}, {}, {}
    schema = meta.schema.to_arrow_schema()
    for j in range(meta.num_columns):
        name = meta.schema.column(j).path
        if "." in name:
            continue
        kind = schema.field(name).type
        per_group = [meta.row_group(g).column(j).statistics for g in range(meta.num_row_groups)]
        if not per_group or any(s is None for s in per_group):
            continue
        nulls[name] = sum(s.null_count for s in per_group)
        if pa.types.is_timestamp(kind) or not all(s.has_min_max for s in per_group):
            continue
        low, high = min(s.min for s in per_group), max(s.max for s in per_group)
        # No infinities (JSON has none: delta-rs would then drop the file's statistics).
        if all(isinstance(v, (str, int, bool)) or (isinstance(v, float) and math.isfinite(v))
               for v in (low, high)):
            lo[name], hi[name] = low, high
    return json.dumps({"numRecords": rows, "minValues": lo, "maxValues": hi, "nullCount": nulls})


_probe_lock = threading.Lock()
_probe_db: duckdb.DuckDBPyConnection | None = None


def _probe_connection() -> duckdb.DuckDBPyConnection:
    """A fresh connection to one in-process DuckDB database kept for key probes: opening
    a database costs ~40 ms of CPU, more than the probe itself, while a connection to an
    open one costs next to nothing. What a connection registers is its own, and goes
    when it is closed; connections may be used from different threads."""
    global _probe_db
    with _probe_lock:
        if _probe_db is None:
            _probe_db = duckdb.connect()
        return _probe_db.cursor()


def _holds_any(dt: DeltaTable, data: pa.Table, keys: list[str],
               files: list[str] | None = None) -> bool:
    """Whether the table (or just its `files`) holds any of `data`'s keys: a scan of the
    key columns only, far cheaper than the MERGE it can spare. Partition columns among the
    keys are filtered by value first, so only those partitions are read."""
    files = dt.file_uris() if files is None else files
    if not files:
        return False
    parts = [c for c in dt.metadata().partition_columns if c in keys]
    where = " AND ".join(
        f'"{c}" IN (' + ", ".join(_literal(v) for v in pc.unique(data.column(c)).to_pylist()) + ")"
        for c in parts) or "true"
    using = ", ".join(f'"{k}"' for k in keys)
    con = _probe_connection()
    try:
        con.register("s", decoded(data.select(keys)))
        return bool(con.execute(f"SELECT 1 FROM (SELECT {using} FROM {scan_sql(dt, files)} WHERE {where}) "
                                f"SEMI JOIN s USING ({using}) LIMIT 1").fetchall())
    finally:
        con.close()


def holds_any(table: str, data: pa.Table, keys: list[str]) -> bool:
    """Whether `table` already has a row with any of `data`'s keys."""
    dt = open_table(table)
    return dt is not None and data.num_rows > 0 and _holds_any(dt, data, keys)


def _literal(value) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'" if isinstance(value, str) else repr(value)


def delete(table: str, predicate: str, retries: int = 10) -> int:
    """Delete the rows matching `predicate` (SQL over the table's columns); returns how
    many. Deleting nothing commits nothing. A conflicting concurrent commit (one that
    rewrote a file this delete read) is retried like a MERGE's."""
    dt = open_table(table)
    if dt is None:
        return 0
    if not read(table, f"SELECT 1 FROM t WHERE {predicate} LIMIT 1").num_rows:
        return 0
    for attempt in range(retries):
        try:
            return dt.delete(predicate).get("num_deleted_rows", 0)
        except CommitFailedError as e:
            _retrying(table, attempt, retries, e)
            dt.update_incremental()
    raise AssertionError("unreachable")


def fingerprint(con: duckdb.DuckDBPyConnection, relation_sql: str) -> str:
    """Order-independent content hash of a relation, computed inside DuckDB."""
    cols = con.execute(f"DESCRIBE {relation_sql}").fetchall()
    schema = ",".join(f"{c[0]}:{c[1]}" for c in cols)
    n, h = con.execute(
        f"SELECT count(*), coalesce(sum(hash(r)::HUGEINT), 0) FROM {relation_sql} r"
    ).fetchall()[0]
    return f"{schema}|{n}|{h}"


# Commits that rearrange files without changing content (nightly maintenance).
_HOUSEKEEPING = {"OPTIMIZE", "VACUUM START", "VACUUM END"}


def _last_fingerprint(dt: DeltaTable) -> str | None:
    """The fingerprint of the last content-changing commit, looking past maintenance."""
    for commit in dt.history(20):  # newest first
        if commit.get("operation") not in _HOUSEKEEPING:
            return commit.get(FINGERPRINT)
    return None


def replace_if_changed(table: str, data: pa.Table, fp: str) -> WriteResult:
    """Overwrite a derived table, but only when its content fingerprint changed,
    so a rebuild on unchanged input leaves the Delta version where it was."""
    dt = open_table(table)
    if dt is not None and _last_fingerprint(dt) == fp:
        return WriteResult(table, dt.version())
    write_deltalake(uri(table), data, mode="overwrite", schema_mode="overwrite",
                    commit_properties=CommitProperties(custom_metadata={FINGERPRINT: fp}),
                    storage_options=options())
    return WriteResult(table, open_table(table).version(), inserted=data.num_rows)


def stats(table: str) -> dict:
    """Version, row count and column schema, for Dagster metadata and summaries."""
    dt = open_table(table)
    if dt is None:
        return {"exists": False}
    rows = read(table, "SELECT count(*) AS n FROM t").column("n")[0].as_py()
    return {"exists": True, "version": dt.version(), "rows": rows,
            "schema": arrow_schema(dt), "uri": uri(table)}
