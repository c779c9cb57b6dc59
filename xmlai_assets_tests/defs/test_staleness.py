"""What the UI marks stale, read with the resolver behind its badges: a new, changed or
removed file marks the master and everything after it; an unchanged rerun marks nothing."""

import dagster as dg
import pytest
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs import automation
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets_tests.defs.test_automation import tick

AFTER_THE_FILES = sorted(
    k.to_user_string()
    for k in automation.FROM_MASTER.resolve(build_definitions().resolve_asset_graph())
)
CONFIG = {
    "ops": {
        "trained_model": {
            "config": {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "epochs": 1}
        }
    }
}


def statuses(instance) -> dict[str, StaleStatus]:
    graph = build_definitions().resolve_asset_graph()
    resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
    return {key: resolver.get_status(dg.AssetKey(key)) for key in AFTER_THE_FILES}


def sensor_tick_and_runs(instance, layout, cursor=None):
    """What the daemon does: evaluate the sensor, apply its requests, run what it asks."""
    result = tick(instance, layout, cursor)
    for event in result.asset_events:
        instance.report_runless_asset_event(event)
    paths = DataPaths(data_dir=str(layout.data_dir))
    job = build_definitions(paths).resolve_implicit_global_asset_job_def()
    for run in result.run_requests:
        job.execute_in_process(
            instance=instance,
            asset_selection=list(run.asset_selection),
            partition_key=run.partition_key,
            raise_on_error=False,
        )
    return result


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(4):
        generate_timeline(seed, seconds=8, name=f"s{seed}").write(layout.timelines_dir)
    return layout


@pytest.mark.parametrize("change", ["new", "changed", "removed"])
def test_a_file_change_marks_the_master_and_all_after_it_stale(layout, change):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, CONFIG)
        first = sensor_tick_and_runs(instance, layout)
        assert set(statuses(instance).values()) == {StaleStatus.FRESH}
        if change == "new":
            generate_timeline(10, seconds=8, name="s new").write(layout.timelines_dir)
        elif change == "changed":
            generate_timeline(11, seconds=8, name="s1").write(layout.timelines_dir)
        else:
            (layout.timelines_dir / "s2.xml").unlink()
        sensor_tick_and_runs(instance, layout, first.cursor)
        # the files are parsed, nothing downstream has run: all of it is behind (a removal
        # rebuilds the master at once, so the master is current and all after it behind)
        want = dict.fromkeys(AFTER_THE_FILES, StaleStatus.STALE)
        if change == "removed":
            want["master_training_data"] = StaleStatus.FRESH
        assert statuses(instance) == want


def test_a_rebuilt_master_leaves_the_model_stale_until_it_is_trained_again(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, CONFIG)
        generate_timeline(10, seconds=8, name="s new").write(layout.timelines_dir)
        assert run_pipeline(layout, instance, train=False)
        status = statuses(instance)
        assert status["master_training_data"] == StaleStatus.FRESH
        assert status["trained_model"] == StaleStatus.STALE
        assert run_pipeline(layout, instance, CONFIG)
        assert set(statuses(instance).values()) == {StaleStatus.FRESH}
        # and an unchanged rerun marks nothing
        assert run_pipeline(layout, instance, train=False)
        assert set(statuses(instance).values()) == {StaleStatus.FRESH}
