"""The landing sensors and Declarative Automation, evaluated directly the way the daemon
does: files dropped into landing/ are ingested in a batch of their own, downstream assets
are requested once, and nothing is requested again without new files."""
import json
import os
import time

import dagster as dg
import pytest

from medlake import landing, lake

PATTERNS = ["**/*.json"]


def _age(path, seconds: float = 3600) -> None:
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_scan_waits_for_settling_and_reports_each_change_once(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.json").write_text("{}")
    (tmp_path / "ignored.txt").write_text("x")
    _age(tmp_path / "a.json")
    now = time.time()
    first = landing.scan(tmp_path, PATTERNS, {}, now, settle_seconds=10)
    assert list(first.ready) == ["a.json"] and first.waiting == ["sub/b.json"]
    assert landing.scan(tmp_path, PATTERNS, first.seen, now, 10).ready == {}
    # Later, b has settled; a was rewritten (new size), so it counts as changed.
    _age(tmp_path / "sub" / "b.json")
    (tmp_path / "a.json").write_text('{"x": 1}')
    _age(tmp_path / "a.json", 60)
    second = landing.scan(tmp_path, PATTERNS, first.seen, time.time(), 10)
    assert sorted(second.ready) == ["a.json", "sub/b.json"]
    # A vanished file leaves the cursor, so it is not remembered forever.
    (tmp_path / "a.json").unlink()
    third = landing.scan(tmp_path, PATTERNS, second.seen, time.time(), 10)
    assert third.ready == {} and list(third.seen) == ["sub/b.json"]


def test_scan_caps_a_batch_and_leaves_the_rest_for_the_next(tmp_path):
    for i in range(5):
        (tmp_path / f"{i}.json").write_text("{}")
        _age(tmp_path / f"{i}.json")
    first = landing.scan(tmp_path, PATTERNS, {}, time.time(), 10, max_files=3)
    assert len(first.ready) == 3 and len(first.waiting) == 2
    second = landing.scan(tmp_path, PATTERNS, first.seen, time.time(), 10, max_files=3)
    assert len(second.ready) == 2 and not set(second.ready) & set(first.ready)



@pytest.fixture
def landed(home, monkeypatch):
    from medlake.generate import generate

    monkeypatch.setenv("MEDLAKE_LANDING_SETTLE_SECONDS", "600")  # slow CI cannot race it
    generate(home / "landing", patients=3, seed=11, bad_files=False)
    for p in (home / "landing").rglob("*"):
        if p.is_file():
            _age(p)
    return home


def test_dropped_files_are_ingested_by_the_sensor_and_flow_downstream_once(landed):
    from orchestration.definitions import defs

    fhir_files = sorted((landed / "landing" / "fhir").rglob("*.json"))
    growing = fhir_files[-1]
    os.utime(growing)  # just written: still arriving
    sensor = defs.resolve_sensor_def("fhir_landing_sensor")
    fhir_keys = {k for k in defs.resolve_asset_graph().get_all_asset_keys()
                 if k.path[0] == "bronze" and k.path[1].startswith("fhir")}

    with dg.instance_for_test() as instance:
        # The daemon's first automation tick only sets the baseline.
        baseline = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert baseline.total_requested == 0

        result = sensor(dg.build_sensor_context(instance=instance, definitions=defs))
        assert len(result.run_requests) == 1
        request = result.run_requests[0]
        batch = request.partition_key
        assert batch.startswith("fhir-") and request.tags["medlake/batch_id"] == batch
        assert request.run_key == batch
        assert result.dynamic_partitions_requests[0].partition_keys == [batch]
        manifest = landing.read_manifest(batch)
        assert len(manifest.files) == len(fhir_files) - 1
        assert growing.relative_to(landed / "landing" / "fhir").as_posix() not in manifest.files

        # What the daemon does with the result: add the partition, launch the run.
        instance.add_dynamic_partitions("ingest_batches", [batch])
        from assets.ehr.assets import fhir_assets

        run = dg.materialize([fhir_assets], instance=instance, partition_key=batch,
                             tags=request.tags, resources={})
        assert run.success
        logged = lake.read("bronze.ingest_log", "SELECT DISTINCT batch_id, count(*) FROM t "
                           "GROUP BY 1").to_pylist()
        assert logged == [{"batch_id": batch, "count_star()": len(fhir_files) - 1}]

        # Automation requests what depends on the new FHIR rows, and nothing else.
        graph = defs.resolve_asset_graph()
        downstream = set().union(*(graph.get(k).child_keys for k in fhir_keys))
        closure, todo = set(), list(downstream)
        while todo:
            k = todo.pop()
            if k not in closure:
                closure.add(k)
                todo.extend(graph.get(k).child_keys)
        after = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                  cursor=baseline.cursor)
        requested = {r.key for r in after.results if r.true_subset.size}
        requested = {k for k in requested if isinstance(k, dg.AssetKey)}
        assert {dg.AssetKey(["silver", "patient"]), dg.AssetKey(["gold", "patient_360"]),
                dg.AssetKey(["vectors", "clinical_chunks"])} <= requested
        assert requested <= closure  # e.g. no DICOM- or VCF-only model, no bronze asset
        again = dg.evaluate_automation_conditions(defs=defs, instance=instance,
                                                  cursor=after.cursor)
        assert again.total_requested == 0

        # No new files: the next tick, also after a daemon restart (the stored cursor is
        # all it keeps), requests nothing.
        quiet = sensor(dg.build_sensor_context(instance=instance, definitions=defs,
                                               cursor=result.cursor))
        assert not quiet.run_requests and "arriving" in quiet.skip_reason.skip_message
        # The growing file settles and is picked up alone.
        _age(growing)
        late = sensor(dg.build_sensor_context(instance=instance, definitions=defs,
                                              cursor=quiet.cursor))
        assert len(late.run_requests) == 1
        assert list(landing.read_manifest(late.run_requests[0].partition_key).files) == \
            [growing.relative_to(landed / "landing" / "fhir").as_posix()]
        assert json.loads(late.cursor).keys() == json.loads(result.cursor).keys() | {
            growing.relative_to(landed / "landing" / "fhir").as_posix()}


def test_rerunning_a_batch_partition_changes_nothing(landed):
    """A backfill over batches already ingested: same Delta versions, no new rows."""
    from assets.ehr.assets import fhir_assets

    files = {p.relative_to(landed / "landing" / "fhir").as_posix(): [1, 1]
             for p in (landed / "landing" / "fhir").rglob("*.json")}
    batch = landing.batch_id("fhir", files, time.time())
    landing.write_manifest(landing.Manifest(batch, "fhir", "fhir", files))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("ingest_batches", [batch, "dicom-x"])
        landing.write_manifest(landing.Manifest("dicom-x", "dicom", "dicom", {}))
        assert dg.materialize([fhir_assets], instance=instance, partition_key=batch).success
        versions = {t: lake.version(t) for t in ("bronze.fhir_resources", "bronze.ingest_log")}
        for key in (batch, "dicom-x"):  # a re-run, and another modality's batch
            rerun = dg.materialize([fhir_assets], instance=instance, partition_key=key)
            assert rerun.success
            # Nothing new: no materialization, so automation has nothing to follow.
            assert rerun.get_asset_materialization_events() == []
        assert {t: lake.version(t) for t in versions} == versions
