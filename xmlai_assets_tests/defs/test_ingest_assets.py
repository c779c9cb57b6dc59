"""The ingest assets materialized on a temporary instance and data folder."""

import dagster as dg
import pandas as pd
import pytest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.paths import MASTER_CSV, DataLayout, frames_parquet
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import COLUMNS
from xmlai_assets_tests.timeline.hostile import SECRET, hostile_files


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(3):
        generate_timeline(seed, seconds=6, name=f"good {seed} ø").write(layout.timelines_dir)
    return layout


def metadata(instance, key, partition=None):
    if partition is None:
        event = instance.get_latest_materialization_event(dg.AssetKey(key))
        return event.asset_materialization.metadata
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata


def partition_status(instance, key="timeline_frames"):
    """(materialized, failed) partition keys, as the UI's partition bar reads them."""
    from dagster._core.storage.partition_status_cache import (
        get_and_update_asset_status_cache_value,
    )

    from xmlai_assets.defs.partitions import timeline_files

    value = get_and_update_asset_status_cache_value(instance, dg.AssetKey(key), timeline_files)
    done = value.deserialize_materialized_partition_subsets(timeline_files)
    failed = value.deserialize_failed_partition_subsets(timeline_files)
    return set(done.get_partition_keys()), set(failed.get_partition_keys())


def test_materialize_ingest_writes_the_csv_and_its_metadata(layout):
    bad = hostile_files(layout.timelines_dir)
    good = ["good 0 ø.xml", "good 1 ø.xml", "good 2 ø.xml"]
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.local(MASTER_CSV))
        assert list(master.columns) == list(COLUMNS)
        assert sorted(master["video_id"].unique()) == ["good 0 ø", "good 1 ø", "good 2 ø"]
        assert SECRET not in layout.local(MASTER_CSV).read_text()

        md = metadata(instance, "master_training_data")
        assert md["dagster/row_count"].value == len(master)
        assert md["column_count"].value == 183
        assert md["video_count"].value == 3
        assert sum(r.data["rows"] for r in md["rows_per_video"].records) == len(master)
        assert set(md["failed_files"].data) == set(bad)
        for name, reason in bad.items():
            assert reason in md["failed_files"].data[name]
        assert [c.name for c in md["dagster/column_schema"].schema.columns] == list(COLUMNS)
        assert all(c.description for c in md["dagster/column_schema"].schema.columns)
        assert md["preview"].value.startswith("| video_id | source_video_name | time |")
        assert md["size_bytes"].value == layout.local(MASTER_CSV).stat().st_size

        # each good file is a materialized partition carrying its own rows, not the run's
        materialized, failed = partition_status(instance)
        assert materialized == set(good)
        assert failed == set(bad)
        for name in good:
            rows = len(master[master["video_id"] == name[:-4]])
            part = metadata(instance, "timeline_frames", name)
            assert part["dagster/row_count"].value == rows
            assert part["length_frames"].value >= part["declared_duration_frames"].value
        partitions = instance.get_dynamic_partitions("timeline_files")
        assert sorted(partitions) == sorted([*bad, *good])
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("master_training_data"), "all_timelines_parsed")]
        )
        evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
        assert evaluation.passed is False


def test_a_file_whose_declared_length_is_overridden_says_so(layout, tmp_path):
    from xmlai_assets_tests.timeline.xmeml_builder import clip, document, track

    (layout.timelines_dir / "zero duration.xml").write_text(
        document(track(clip(0, 50)), duration=0)
    )
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        part = metadata(instance, "timeline_frames", "zero duration.xml")
        assert part["declared_duration_frames"].value == 0
        assert part["length_frames"].value == 50
        assert part["length_overridden"].value is True
        assert part["dagster/row_count"].value == 50


def test_rerun_with_unchanged_inputs_gives_identical_bytes_and_parses_nothing(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        first = layout.local(MASTER_CSV).read_bytes()
        frames = {p.name: p.read_bytes() for p in layout.local("frames").iterdir()}
        v1 = metadata(instance, "master_training_data")["sha256"].value
        parses = len(
            instance.fetch_materializations(dg.AssetKey("timeline_frames"), limit=100).records
        )
        assert run_pipeline(layout, instance, train=False)
        again = instance.fetch_materializations(dg.AssetKey("timeline_frames"), limit=100)
        assert len(again.records) == parses
        assert layout.local(MASTER_CSV).read_bytes() == first
        assert {p.name: p.read_bytes() for p in layout.local("frames").iterdir()} == frames
        assert metadata(instance, "master_training_data")["sha256"].value == v1
        assert not [p for p in layout.data_dir.rglob("*.tmp")]


def test_removed_file_leaves_the_master_and_a_broken_file_drops_stale_frames(layout):
    generate_timeline(3, seconds=6, name="good 3 ø").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        (layout.timelines_dir / "good 0 ø.xml").unlink()
        (layout.timelines_dir / "good 1 ø.xml").write_text("<xmeml><broken")
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.local(MASTER_CSV))
        assert sorted(master["video_id"].unique()) == ["good 2 ø", "good 3 ø"]
        assert not layout.local(frames_parquet("good 1 ø.xml")).exists()


def test_definitions_load_with_the_ingest_lineage():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    frames = dg.AssetKey("timeline_frames")
    master = dg.AssetKey("master_training_data")
    assert graph.get(master).parent_keys == {frames, dg.AssetKey("timeline_xml")}
    assert graph.get(frames).parent_keys == {dg.AssetKey("timeline_xml")}
    for key in (frames, master):
        assert graph.get(key).group_name == "ingest"
        assert graph.get(key).code_version


def test_sample_folder_is_bundled():
    from xmlai_assets.paths import DEFAULT_DATA_DIR, list_timeline_files

    assert len(list_timeline_files(DEFAULT_DATA_DIR / "timelines")) >= 10
    size = sum(p.stat().st_size for p in (DEFAULT_DATA_DIR / "timelines").iterdir())
    assert size < 5 * 1024 * 1024


def test_a_run_parsing_in_a_pool_of_processes_marks_each_partition_as_a_serial_one(layout):
    from xmlai_assets.cli import QUIET
    from xmlai_assets.defs.partitions import sync_timeline_partitions

    bad = hostile_files(layout.timelines_dir)
    paths = DataPaths(data_dir=str(layout.data_dir))
    job = build_definitions(paths).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        sync_timeline_partitions(instance, layout.timelines_dir)
        keys = sorted(instance.get_dynamic_partitions("timeline_files"))
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey("timeline_frames")],
            run_config={**QUIET, "ops": {"timeline_frames": {"config": {"parse_workers": 2}}}},
            tags={
                "dagster/asset_partition_range_start": keys[0],
                "dagster/asset_partition_range_end": keys[-1],
            },
            raise_on_error=False,
        )
        assert not result.success  # the hostile files fail their partitions
        logs = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("in 2 processes" in line for line in logs)
        materialized, failed = partition_status(instance)
        assert failed == set(bad)
        assert materialized == set(keys) - set(bad)
        assert materialized == {"good 0 ø.xml", "good 1 ø.xml", "good 2 ø.xml"}
