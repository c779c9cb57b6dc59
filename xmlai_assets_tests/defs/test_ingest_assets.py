"""The ingest assets materialized on a temporary instance and data folder."""

import dagster as dg
import pandas as pd
import pytest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import COLUMNS
from xmlai_assets_tests.timeline.hostile import SECRET, hostile_files


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(3):
        generate_timeline(seed, seconds=6, name=f"good {seed} ø").write(layout.timelines_dir)
    return layout


def metadata(instance, key):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return event.asset_materialization.metadata


def test_materialize_ingest_writes_the_csv_and_its_metadata(layout):
    bad = hostile_files(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.master_csv)
        assert list(master.columns) == list(COLUMNS)
        assert sorted(master["video_id"].unique()) == ["good 0 ø", "good 1 ø", "good 2 ø"]
        assert SECRET not in layout.master_csv.read_text()

        md = metadata(instance, "master_training_data")
        assert md["dagster/row_count"].value == len(master)
        assert md["column_count"].value == 183
        assert md["video_count"].value == 3
        assert sum(md["rows_per_video"].data.values()) == len(master)
        assert set(md["failed_files"].data) == set(bad)
        for name, reason in bad.items():
            assert reason in md["failed_files"].data[name]
        assert [c.name for c in md["dagster/column_schema"].schema.columns] == list(COLUMNS)
        assert md["size_bytes"].value == layout.master_csv.stat().st_size

        frames_md = metadata(instance, "timeline_frames")
        assert frames_md["files_parsed"].value == 3
        assert frames_md["files_failed"].value == len(bad)
        partitions = instance.get_dynamic_partitions("timeline_files")
        assert sorted(partitions) == sorted([*bad, "good 0 ø.xml", "good 1 ø.xml", "good 2 ø.xml"])
        check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey("master_training_data"), "all_timelines_parsed")]
        )
        evaluation = next(iter(check.values())).event.dagster_event.event_specific_data
        assert evaluation.passed is False


def test_rerun_with_unchanged_inputs_gives_identical_bytes(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        first = layout.master_csv.read_bytes()
        frames = {p.name: p.read_bytes() for p in layout.frames_dir.iterdir()}
        v1 = metadata(instance, "master_training_data")["sha256"].value
        assert run_pipeline(layout, instance, train=False)
        assert layout.master_csv.read_bytes() == first
        assert {p.name: p.read_bytes() for p in layout.frames_dir.iterdir()} == frames
        assert metadata(instance, "master_training_data")["sha256"].value == v1
        assert not [p for p in layout.data_dir.rglob("*.tmp")]


def test_removed_file_leaves_the_master_and_a_broken_file_drops_stale_frames(layout):
    generate_timeline(3, seconds=6, name="good 3 ø").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        (layout.timelines_dir / "good 0 ø.xml").unlink()
        (layout.timelines_dir / "good 1 ø.xml").write_text("<xmeml><broken")
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.master_csv)
        assert sorted(master["video_id"].unique()) == ["good 2 ø", "good 3 ø"]
        assert not layout.frames_file("good 1 ø.xml").exists()


def test_definitions_load_with_the_ingest_lineage():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    frames = dg.AssetKey("timeline_frames")
    master = dg.AssetKey("master_training_data")
    assert graph.get(master).parent_keys == {frames}
    assert graph.get(frames).parent_keys == {dg.AssetKey("timeline_xml")}
    for key in (frames, master):
        assert graph.get(key).group_name == "ingest"
        assert graph.get(key).code_version


def test_sample_folder_is_bundled():
    from xmlai_assets.paths import DEFAULT_DATA_DIR, list_timeline_files

    assert len(list_timeline_files(DEFAULT_DATA_DIR / "timelines")) >= 10
    size = sum(p.stat().st_size for p in (DEFAULT_DATA_DIR / "timelines").iterdir())
    assert size < 5 * 1024 * 1024
