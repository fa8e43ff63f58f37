"""Crash safety: real ingest and dbt processes SIGKILLed at random moments and rerun
(medlake.chaos; bench/chaos.py runs 20 trials), and the checks that judge the lake."""
import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from medlake import chaos, lake, storage, verify


def test_a_key_stored_twice_a_missing_file_and_a_bad_log_are_found(home):
    t = "bronze.things"
    lake.merge(t, pa.table({"k": ["a", "b"], "v": [1, 2]}), ["k"])
    assert verify.problems(t, ["k"]) == []
    write_deltalake(lake.uri(t), pa.table({"k": ["a"], "v": [3]}), mode="append")
    assert verify.problems(t, ["k"]) == ["bronze.things: 1 keys (k) stored more than once"]
    dt = DeltaTable(lake.uri(t))
    storage.local_path(dt.file_uris()[0]).unlink()
    assert "referenced files missing" in verify.problems(t, ["k"])[0]
    # A create killed before its first commit: not a table to readers, a problem here.
    (home / "lake" / "bronze" / "half" / "_delta_log").mkdir(parents=True)
    assert "bronze.half" not in lake.list_tables("bronze")
    assert "bronze.half" in verify.tables(("bronze",))
    assert "does not load" in verify.problems("bronze.half")[0]


def test_a_key_stored_twice_and_a_missing_object_are_found_on_s3(s3_home):
    t = "bronze.things"
    lake.merge(t, pa.table({"k": ["a", "b"], "v": [1, 2]}), ["k"])
    assert verify.tables(("bronze",)) == [t] and verify.problems(t, ["k"]) == []
    write_deltalake(lake.uri(t), pa.table({"k": ["a"], "v": [3]}), mode="append",
                    storage_options=lake.options())
    assert verify.problems(t, ["k"]) == ["bronze.things: 1 keys (k) stored more than once"]
    first = lake.open_table(t).file_uris()[0]
    storage.filesystem().rm(storage.strip(first))
    assert verify.problems(t, ["k"]) == [
        f"bronze.things v2: 1 referenced files missing, e.g. {first}"]


def test_content_ignores_when_and_by_which_batch_a_row_came_but_not_its_data(home):
    rows = {"k": ["a", "b"], "v": [1, 2], "batch_id": ["b1", "b1"], "source_uri": ["x", "y"]}
    lake.merge("bronze.one", pa.table(rows), ["k"])
    lake.merge("bronze.two", pa.table({**rows, "batch_id": ["b2", "b3"], "source_uri": ["y", "x"]}), ["k"])
    lake.merge("bronze.three", pa.table({**rows, "v": [1, 5]}), ["k"])
    assert verify.content("bronze.one", ["k"]) == verify.content("bronze.two", ["k"])
    assert verify.content("bronze.one", ["k"]) != verify.content("bronze.three", ["k"])
    # ...except where provenance is the key (the ingest log, the quarantine).
    keyed = ["k", "source_uri"]
    assert verify.content("bronze.one", keyed) != verify.content("bronze.two", keyed)
    reference = {t: verify.content(t, ["k"]) for t in ("bronze.one", "bronze.two")}
    lake.merge("bronze.two", pa.table({"k": ["c"], "v": [9]}), ["k"])
    assert verify.check(("bronze",), reference) == [
        "bronze.three: not in the clean run", "bronze.two: 3 rows, the clean run 2"]


def test_the_schedule_alternates_ingests_alone_and_among_four_writers_and_dbt_builds():
    assert chaos.schedule(5) == [("ingest", 1), ("dbt", 1), ("concurrent", 4), ("ingest", 4),
                                 ("ingest", 1)]


def test_killed_ingests_and_dbt_build_rerun_to_a_whole_lake(tmp_path):
    """Three trials (bench/chaos.py runs 20): an ingest with one bronze writer (appends)
    and one of four ingests running at once (MERGEs only), each SIGKILLed somewhere in
    the time a clean run commits in and rerun; a dbt build over clean bronze, killed and
    rerun. Each
    lake must then equal the clean run's: every table loads with all its files, no key
    twice, no row lost, the bad files quarantined exactly once."""
    run = chaos.Chaos(tmp_path, patients=4, chunk_files=2, dbt_select=["+gold_person"])
    run.prepare()
    assert run.commits["ingest"] > 10 and run.commits["dbt"] >= 2
    quarantined = run.snapshots["bronze"]["bronze.quarantine"][0]
    assert quarantined >= 6  # every generated bad file, some with several problems
    trials = [run.trial(i, target, writers)
              for i, (target, writers) in enumerate(chaos.schedule(3))]
    for t in trials:
        print(t.line())
    print(chaos.summary(trials))
    assert [t.problems for t in trials] == [[], [], []]
    assert any(t.killed for t in trials)
