import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from medlake import lake


def test_merge_inserts_updates_and_commits_nothing_when_unchanged(home):
    t = "bronze.things"
    data = pa.table({"k": ["a", "b"], "v": [1, 2]})
    first = lake.merge(t, data, ["k"], update_when="s.v <> t.v")
    assert first.inserted == 2
    again = lake.merge(t, data, ["k"], update_when="s.v <> t.v")
    assert not again.changed and again.version == first.version
    changed = lake.merge(t, pa.table({"k": ["b", "c"], "v": [20, 3]}), ["k"],
                         update_when="s.v <> t.v")
    assert (changed.inserted, changed.updated) == (1, 1)
    rows = lake.read(t, "SELECT k, v FROM t ORDER BY k").to_pylist()
    assert rows == [{"k": "a", "v": 1}, {"k": "b", "v": 20}, {"k": "c", "v": 3}]


def test_replace_if_changed_keeps_version_for_same_content(home):
    import duckdb

    t = "silver.things"
    con = duckdb.connect()
    con.execute("CREATE TABLE m AS SELECT * FROM (VALUES (1, 'x'), (2, 'y')) v(a, b)")
    fp = lake.fingerprint(con, "m")
    data = con.sql("SELECT * FROM m").to_arrow_table()
    v0 = lake.replace_if_changed(t, data, fp).version
    # Same rows in another order: same fingerprint, no new version.
    con.execute("CREATE TABLE m2 AS SELECT * FROM m ORDER BY a DESC")
    assert lake.fingerprint(con, "m2") == fp
    assert lake.replace_if_changed(t, data, fp).version == v0
    con.execute("INSERT INTO m VALUES (3, 'z')")
    fp2 = lake.fingerprint(con, "m")
    assert fp2 != fp
    assert lake.replace_if_changed(t, con.sql("SELECT * FROM m").to_arrow_table(), fp2).version == v0 + 1
    assert lake.stats(t)["rows"] == 3


def test_read_of_missing_table_is_empty(home):
    assert lake.read("gold.nothing").num_rows == 0
    assert lake.version("gold.nothing") is None


def test_read_at_an_older_version_time_travels(home):
    t = "silver.notes"
    lake.merge(t, pa.table({"document_id": ["d1"], "text": ["first"]}), ["document_id"],
               update_when="s.text <> t.text")
    v0 = lake.version(t)
    lake.merge(t, pa.table({"document_id": ["d1"], "text": ["second"]}), ["document_id"],
               update_when="s.text <> t.text")
    q = "SELECT text FROM t WHERE document_id = ?"
    assert lake.read(t, q, params=["d1"]).column(0).to_pylist() == ["second"]
    assert lake.read(t, q, params=["d1"], version=v0).column(0).to_pylist() == ["first"]


def test_sole_writer_merge_appends_new_keys_and_merges_once_any_key_is_held(home):
    t = "bronze.pairs"
    lake.merge(t, pa.table({"a": ["x"], "b": [1], "v": ["old"]}), ["a", "b"], sole_writer=True)
    # Neither (x, 2) nor (y, 1) is held, though each half of the key is: an append.
    new = lake.merge(t, pa.table({"a": ["x", "y"], "b": [2, 1], "v": ["n1", "n2"]}), ["a", "b"],
                     sole_writer=True)
    assert new.inserted == 2
    assert lake.open_table(t).history(1)[0]["operation"] == "WRITE"
    # Without the sole-writer guarantee, new keys still go through a MERGE (concurrent
    # writers rely on its conflict detection).
    lake.merge(t, pa.table({"a": ["q"], "b": [9], "v": ["m"]}), ["a", "b"])
    assert lake.open_table(t).history(1)[0]["operation"] == "MERGE"
    # One held key: a MERGE, so the held row is updated in place, not duplicated.
    both = lake.merge(t, pa.table({"a": ["x", "z"], "b": [1, 1], "v": ["new", "n3"]}),
                      ["a", "b"], update_when="s.v <> t.v", sole_writer=True)
    assert (both.inserted, both.updated) == (1, 1)
    assert lake.open_table(t).history(1)[0]["operation"] == "MERGE"
    rows = lake.read(t, "SELECT a, b, v FROM t ORDER BY a, b").to_pylist()
    assert rows == [{"a": "q", "b": 9, "v": "m"}, {"a": "x", "b": 1, "v": "new"},
                    {"a": "x", "b": 2, "v": "n1"}, {"a": "y", "b": 1, "v": "n2"},
                    {"a": "z", "b": 1, "v": "n3"}]


# lake.ArrowWriter: appends written by pyarrow and committed as Delta add actions.

_T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
_AW_SCHEMA = pa.schema([
    ("chrom", pa.string()), ("k", pa.string()), ("n", pa.int64()), ("f", pa.float64()),
    ("ints", pa.list_(pa.int64())), ("at", pa.timestamp("us", tz="UTC")), ("s", pa.string()),
])


def _aw_batch(chroms: list, start: int = 0) -> pa.Table:
    """One row per entry of `chroms`: unique keys, nulls and lists with null elements
    scattered, `s` dictionary-encoded as the genomics tables hand it over."""
    rows = []
    for i, c in enumerate(chroms, start):
        rows.append({"chrom": c, "k": f"k{i:04d}", "n": None if i % 7 == 3 else i * 10 - 55,
                     "f": None if i % 5 == 1 else i / 4,
                     "ints": None if i % 6 == 2 else [i, None, -i][: i % 4],
                     "at": None if i % 9 == 4 else _T0 + timedelta(seconds=i),
                     "s": None if i % 8 == 5 else f"s{i % 3}"})
    t = pa.Table.from_pylist(rows, schema=_AW_SCHEMA)
    return t.set_column(6, "s", pc.dictionary_encode(t.column("s")))


def _current_adds(t: str) -> dict[str, dict]:
    """The table's current files' add actions as the JSON commits hold them, by path
    (the log's paths are URI-encoded)."""
    from urllib.parse import unquote

    adds = {}
    log = Path(lake.uri(t)) / "_delta_log"
    for f in sorted(log.glob("*.json")):
        for line in f.read_text().splitlines():
            action = json.loads(line)
            if "add" in action:
                adds[unquote(action["add"]["path"])] = action["add"]
            elif "remove" in action:
                adds.pop(unquote(action["remove"]["path"]), None)
    assert set(adds) == {Path(p).relative_to(lake.uri(t)).as_posix()
                         for p in DeltaTable(lake.uri(t)).file_uris()}
    return adds


def _strict(text: str) -> dict:
    """JSON as the Delta protocol writes it: no NaN or Infinity."""
    def bad(name):
        raise AssertionError(f"{name} in Delta statistics")
    return json.loads(text, parse_constant=bad)


def _writers(t: str) -> dict[str, str]:
    """Which library wrote each current file: pyarrow (parquet-cpp) or delta-rs (parquet-rs)."""
    return {p: pq.read_metadata(Path(lake.uri(t)) / p).created_by for p in _current_adds(t)}


def _as_rows(data: pa.Table) -> list[dict]:
    return sorted(lake.decoded(data).to_pylist(), key=lambda r: r["k"])


def test_arrow_writer_appends_every_row_once_into_its_partition(home):
    t = "bronze.aw_rows"
    lake.ensure(t, _AW_SCHEMA, ["chrom"])
    # Interleaved partitions (filtered out per partition), then contiguous ones (slices),
    # written side by side, in several row groups.
    first = _aw_batch(["1", "2", "1", "X", "2", "2", "1", "X", "1", "2"] * 3)
    second = _aw_batch(["1"] * 9 + ["2"] * 4 + ["MT"] * 7, start=100)
    w1 = lake.merge(t, first, ["chrom", "k"], sole_writer=True, writer_properties=lake.ArrowWriter())
    w2 = lake.merge(t, second, ["chrom", "k"], sole_writer=True,
                    writer_properties=lake.ArrowWriter(dict(row_group_size=3), threads=2))
    assert w1.appended and w2.appended and (w1.inserted, w2.inserted) == (30, 20)
    assert lake.open_table(t).history(1)[0]["operation"] == "WRITE"

    got = lake.read(t, "SELECT * FROM t ORDER BY k")
    assert got.num_rows == 50
    assert got.select(_AW_SCHEMA.names).to_pylist() == _as_rows(pa.concat_tables(
        [lake.decoded(first), lake.decoded(second)]))
    # One file per partition and batch, each holding exactly that partition's rows.
    adds = _current_adds(t)
    assert sorted(a["partitionValues"]["chrom"] for a in adds.values()) == ["1", "1", "2", "2", "MT", "X"]
    assert all("pyarrow" in w or "parquet-cpp" in w for w in _writers(t).values())
    expected = {r["k"]: r["chrom"] for r in got.to_pylist()}
    seen = []
    for path, add in adds.items():
        keys = pq.read_table(Path(lake.uri(t)) / path).column("k").to_pylist()
        assert {expected[k] for k in keys} == {add["partitionValues"]["chrom"]}
        assert path.startswith(f"chrom={add['partitionValues']['chrom']}/")
        seen += keys
    assert sorted(seen) == sorted(expected)


def test_arrow_writer_statistics_are_the_files_own(home):
    t = "bronze.aw_stats"
    lake.ensure(t, _AW_SCHEMA, ["chrom"])
    batch = _aw_batch(["1", "2", "1", "2", "2", "X"] * 4)
    # Edge values: a key too long for Parquet statistics, infinities and NaN.
    f = batch.column("f").to_pylist()
    f[0], f[1], f[3] = float("inf"), float("nan"), float("-inf")
    k = batch.column("k").to_pylist()
    k[5] = "k9" + "z" * 5000  # partition X
    batch = batch.set_column(1, "k", pa.array(k)).set_column(3, "f", pa.array(f, pa.float64()))
    stats_on = ["k", "n", "f", "at"]
    lake.merge(t, batch, ["chrom", "k"], sole_writer=True, writer_properties=lake.ArrowWriter(
        dict(write_statistics=stats_on, row_group_size=2, use_dictionary=["k", "s"])))

    parsed = {r["path"]: r for r in pa.table(
        lake.open_table(t).get_add_actions(flatten=True)).to_pylist()}
    for path, add in _current_adds(t).items():
        stats = _strict(add["stats"])
        rows = pq.read_table(Path(lake.uri(t)) / path)
        assert stats["numRecords"] == rows.num_rows == parsed[path]["num_records"]
        # No statistics for the columns written without them, nor for lists.
        assert set(stats["nullCount"]) <= set(stats_on)
        assert set(stats["minValues"]) | set(stats["maxValues"]) <= {"k", "n", "f"}
        for c in stats_on:
            col = rows.column(c)
            assert stats["nullCount"][c] == col.null_count == parsed[path][f"null_count.{c}"]
            finite = col if c != "f" else col.filter(pc.is_finite(col))
            if c in stats["minValues"]:
                lo, hi = pc.min_max(finite).as_py().values()
                assert (stats["minValues"][c], stats["maxValues"][c]) == (lo, hi)
                assert (parsed[path][f"min.{c}"], parsed[path][f"max.{c}"]) == (lo, hi)
        # Whatever is left out, the bounds given must hold every value of the file.
        for c, lo in stats["minValues"].items():
            values = [v for v in rows.column(c).to_pylist() if v is not None and v == v]
            assert all(lo <= v <= stats["maxValues"][c] for v in values)
    assert lake.read(t, "SELECT count(*) FROM t").column(0)[0].as_py() == batch.num_rows


def test_arrow_writer_stats_let_a_merge_find_the_stored_row_and_a_rerun_commits_nothing(home):
    t = "bronze.aw_merge"
    lake.ensure(t, _AW_SCHEMA, ["chrom"])
    aw = lake.ArrowWriter(dict(write_statistics=["k", "n"], use_dictionary=["k", "s"]))
    first = _aw_batch(["1", "2"] * 10)
    r1 = lake.merge(t, first, ["chrom", "k"], update_when="s.n <> t.n", sole_writer=True,
                    writer_properties=aw)
    assert r1.appended
    # The last key of chromosome 1's file (its max statistic) and one in the middle of
    # chromosome 2's, with new values, beside a new key.
    held = {r["k"]: r for r in first.to_pylist()}
    changed = [dict(held["k0018"], n=1000), dict(held["k0009"], n=2000),
               dict(held["k0018"], k="k0021", n=3)]
    second = pa.Table.from_pylist(changed, schema=_AW_SCHEMA)
    second = second.set_column(6, "s", pc.dictionary_encode(second.column("s")))  # as handed over
    r2 = lake.merge(t, second, ["chrom", "k"], update_when="s.n <> t.n", sole_writer=True,
                    writer_properties=aw)
    assert not r2.appended and (r2.inserted, r2.updated) == (1, 2)
    assert lake.open_table(t).history(1)[0]["operation"] == "MERGE"
    got = lake.read(t, "SELECT k, count(*) AS c, max(n) AS n FROM t GROUP BY k ORDER BY k").to_pylist()
    assert len(got) == 21 and all(r["c"] == 1 for r in got)
    assert {r["k"]: r["n"] for r in got if r["k"] in ("k0009", "k0018", "k0021")} == \
        {"k0009": 2000, "k0018": 1000, "k0021": 3}
    # Reruns of either batch change nothing and commit nothing.
    v = lake.version(t)
    for batch in (second, first.filter(pc.invert(pc.is_in(first.column("k"), pa.array(["k0009", "k0018"]))))):
        again = lake.merge(t, batch, ["chrom", "k"], update_when="s.n <> t.n", sole_writer=True,
                           writer_properties=aw)
        assert not again.changed and not again.appended and again.version == v
    assert lake.version(t) == v and lake.read(t, "SELECT count(*) FROM t").column(0)[0].as_py() == 21


def test_arrow_writer_falls_back_to_delta_rs_for_null_or_escaped_partition_values(home):
    t = "bronze.aw_fallback"
    lake.ensure(t, _AW_SCHEMA, ["chrom"])
    aw = lake.ArrowWriter(dict(use_dictionary=["s"]))
    nulls = _aw_batch([None, "1", None])
    escaped = _aw_batch(["a/b", "x y", "1", "a/b"], start=10)
    plain = _aw_batch(["1", "2", "1"], start=20)
    for batch in (nulls, escaped, plain):
        assert lake.merge(t, batch, ["chrom", "k"], sole_writer=True, writer_properties=aw).appended
    got = lake.read(t, "SELECT * FROM t ORDER BY k")
    assert got.select(_AW_SCHEMA.names).to_pylist() == _as_rows(
        pa.concat_tables([lake.decoded(b) for b in (nulls, escaped, plain)]))
    by_writer = {}
    for path, who in _writers(t).items():
        value = _current_adds(t)[path]["partitionValues"]["chrom"]
        by_writer.setdefault("pyarrow" if "parquet-cpp" in who else "delta-rs", set()).add(value)
    assert by_writer == {"delta-rs": {None, "a/b", "1", "x y"}, "pyarrow": {"1", "2"}}
    # delta-rs's own maintenance reads both kinds of file: checkpoint, then compaction.
    dt = lake.open_table(t)
    dt.create_checkpoint()
    dt.optimize.compact()
    assert lake.read(t, "SELECT * FROM t ORDER BY k").select(_AW_SCHEMA.names).to_pylist() == \
        got.select(_AW_SCHEMA.names).to_pylist()
