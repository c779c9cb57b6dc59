"""The new-file sensor and the retrain schedule."""

import hashlib
import json
import os
import time

import dagster as dg
import pytest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs import automation
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline.ingest import read_report


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(3):
        generate_timeline(seed, seconds=5, name=f"t{seed}").write(layout.timelines_dir)
    return layout


def tick(instance, layout, cursor=None):
    """Evaluate the sensor once and apply its partition requests, as the daemon does."""
    paths = DataPaths(data_dir=str(layout.data_dir))
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"paths": paths})
    result = automation.timeline_files_sensor(context)
    if isinstance(result, dg.SkipReason):
        return result
    for request in result.dynamic_partitions_requests:
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)
    return result


def requested(result):
    return sorted(
        (r.partition_key, tuple(k.to_user_string() for k in r.asset_selection))
        for r in result.run_requests
    )


def test_new_files_get_a_partition_and_a_frames_run_each(layout):
    with dg.instance_for_test() as instance:
        result = tick(instance, layout)
        assert requested(result) == [(f"t{i}.xml", ("timeline_frames",)) for i in range(3)]
        assert sorted(instance.get_dynamic_partitions("timeline_files")) == [
            "t0.xml",
            "t1.xml",
            "t2.xml",
        ]
        # the cursor stays a few dozen bytes, whatever the number of files
        assert set(json.loads(result.cursor)) == {"listing", "version"}
        assert len(result.cursor) < 120
        # and the folder is observed with a data version that downstream staleness follows
        (event,) = result.asset_events
        assert event.asset_key == dg.AssetKey("timeline_xml")
        assert event.tags["dagster/data_version"] == json.loads(result.cursor)["version"]


def test_a_tick_with_nothing_changed_reads_no_file(layout, monkeypatch):
    with dg.instance_for_test() as instance:
        first = tick(instance, layout)

        def no_reading(*args, **kwargs):
            raise AssertionError("a file was hashed on a tick with nothing changed")

        monkeypatch.setattr(automation, "folder_version", no_reading)
        second = tick(instance, layout, first.cursor)
        assert isinstance(second, dg.SkipReason)


def test_only_a_new_or_changed_file_is_parsed_again_and_a_removed_one_is_dropped(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)  # every file parsed, no cursor yet
        first = tick(instance, layout)
        assert first.run_requests == []  # unchanged files, known from their frames' reports

        generate_timeline(7, seconds=5, name="t new").write(layout.timelines_dir)
        generate_timeline(9, seconds=5, name="t1").write(layout.timelines_dir)  # t1.xml changes
        second = tick(instance, layout, first.cursor)
        assert requested(second) == [
            ("t new.xml", ("timeline_frames",)),
            ("t1.xml", ("timeline_frames",)),
        ]
        tags = {r.partition_key: r.tags["xmlai/trigger"] for r in second.run_requests}
        assert tags == {"t new.xml": "new file", "t1.xml": "changed file"}

        (layout.timelines_dir / "t0.xml").unlink()
        third = tick(instance, layout, second.cursor)
        assert "t0.xml" not in instance.get_dynamic_partitions("timeline_files")
        # the changed and new files are still unparsed: their runs are asked again (same run keys)
        assert {r.run_key for r in second.run_requests} <= {r.run_key for r in third.run_requests}
        assert any("removed" in r.run_key for r in third.run_requests)


def test_a_file_changed_back_to_earlier_content_is_parsed_again(layout):
    path = layout.timelines_dir / "t1.xml"
    original = path.read_bytes()
    job = build_definitions(
        DataPaths(data_dir=str(layout.data_dir))
    ).resolve_implicit_global_asset_job_def()

    def run_requested(result):  # what the daemon does with the requests
        for r in result.run_requests:
            job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey("timeline_frames")],
                partition_key=r.partition_key,
            )

    with dg.instance_for_test() as instance:
        first = tick(instance, layout)
        run_requested(first)
        keys = [r.run_key for r in first.run_requests if r.partition_key == "t1.xml"]
        generate_timeline(9, seconds=5, name="t1").write(layout.timelines_dir)
        second = tick(instance, layout, first.cursor)
        run_requested(second)
        path.write_bytes(original)
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        third = tick(instance, layout, second.cursor)
        keys += [
            r.run_key
            for r in second.run_requests + third.run_requests
            if r.partition_key == "t1.xml"
        ]
        assert len(keys) == 3 and len(set(keys)) == 3  # Dagster skips a run key it saw
        run_requested(third)
        assert read_report(layout, "t1.xml")["xml_sha256"] == hashlib.sha256(original).hexdigest()


def test_a_removal_alone_rebuilds_the_master(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        (layout.timelines_dir / "t2.xml").unlink()
        result = tick(instance, layout)
        assert requested(result) == [(None, ("master_training_data",))]


def test_a_name_dagster_cannot_take_is_reported_not_fatal(layout):
    generate_timeline(4, seconds=5, name="odd...name").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        result = tick(instance, layout)
        assert "odd...name.xml" not in instance.get_dynamic_partitions("timeline_files")
        assert len(result.run_requests) == 3


def test_the_schedule_retrains_everything_from_the_master_with_its_checks():
    defs = build_definitions()
    schedule = defs.resolve_schedule_def("retrain_schedule")
    assert schedule.cron_schedule == "0 3 * * 1" and schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def("retrain")
    keys = {k.to_user_string() for k in job.asset_layer.selected_asset_keys}
    assert keys == {
        "master_training_data",
        "train_data",
        "val_data",
        "test_data",
        "scalers",
        "train_sequences",
        "val_sequences",
        "test_sequences",
        "trained_model",
        "placement_model",
    }
    # the blocking checks run as steps of the same run, so they can stop what follows them
    assert {
        "master_training_data_master_data_valid",
        "train_sequences_sequences_well_formed",
        "val_sequences_sequences_well_formed",
        "test_sequences_sequences_well_formed",
        "val_sequences_split_as_configured",
        "trained_model",  # the promotion check is reported by the training step itself
    } <= set(job.graph.node_dict)


def test_cron_timezone_and_preset_come_from_the_environment(tmp_path, monkeypatch):
    import importlib

    preset = tmp_path / "p.yaml"
    preset.write_text("ops: {trained_model: {config: {epochs: 2}}}\n")
    monkeypatch.setenv("XMLAI_RETRAIN_CRON", "30 1 * * *")
    monkeypatch.setenv("XMLAI_RETRAIN_TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("XMLAI_RETRAIN_PRESET", str(preset))
    module = importlib.reload(automation)
    try:
        assert module.retrain_schedule.cron_schedule == "30 1 * * *"
        assert module.retrain_schedule.execution_timezone == "Europe/Berlin"
        context = dg.build_schedule_context()
        request = module.retrain_schedule.evaluate_tick(context).run_requests[0]
        assert request.run_config == {"ops": {"trained_model": {"config": {"epochs": 2}}}}
    finally:
        for name in ("XMLAI_RETRAIN_CRON", "XMLAI_RETRAIN_TIMEZONE", "XMLAI_RETRAIN_PRESET"):
            monkeypatch.delenv(name)
        importlib.reload(automation)
    assert os.environ.get("XMLAI_RETRAIN_CRON") is None
