"""Faults and bad input: the pipeline finishes with every good row, reports every bad file,
resumes a killed training run, queues concurrent runs, and reruns without change."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml
from dagster._core.instance.ref import InstanceRef

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs.partitions import sync_timeline_partitions
from xmlai_assets.paths import MASTER_CSV, SCALERS_PKL, DataLayout, sequences_npz, split_csv
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import ingest as ingest_module
from xmlai_assets.timeline import parse_timeline
from xmlai_assets_tests.timeline.hostile import SECRET, hostile_files

TINY_TRAIN = {
    "d_model": 32,
    "n_heads": 4,
    "n_layers": 1,
    "d_ff": 64,
    "batch_size": 8,
    "learning_rate": 0.003,
}
ODD_NAME = "  Ünïcødé clip — 第1話 (final)  .xml"


def materialization(instance, key):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return (
        None
        if event is None
        else {k: v.value for k, v in event.asset_materialization.metadata.items()}
    )


def test_good_files_survive_hostile_vanishing_and_oddly_named_neighbours(tmp_path, monkeypatch):
    layout = DataLayout.at(tmp_path / "data")
    good = {}
    for seed in range(20):
        path = generate_timeline(seed, seconds=5, name=f"good {seed:02d}").write(
            layout.timelines_dir
        )
        good[path.stem] = len(parse_timeline(path))
    odd = (
        generate_timeline(99, seconds=5)
        .write(layout.timelines_dir)
        .rename(layout.timelines_dir / ODD_NAME)
    )
    good[odd.stem] = len(parse_timeline(odd))
    bad = hostile_files(layout.timelines_dir)
    vanishing = generate_timeline(50, seconds=5, name="vanishing").write(layout.timelines_dir)
    real_read = ingest_module.read_timeline_bytes

    def read_but_lose_one(path, **kwargs):
        if Path(path).name == vanishing.name:
            vanishing.unlink()  # gone between the listing and the read
        return real_read(path, **kwargs)

    monkeypatch.setattr(ingest_module, "read_timeline_bytes", read_but_lose_one)
    with dg.instance_for_test() as instance:
        assert run_pipeline(
            layout, instance, {"ops": {"trained_model": {"config": {**TINY_TRAIN, "epochs": 1}}}}
        )
        master = pd.read_csv(layout.local(MASTER_CSV))
        assert master.groupby("video_id").size().to_dict() == good
        failed = materialization(instance, "master_training_data")["failed_files"]
        assert set(failed) == set(bad) | {vanishing.name}
        for name, reason in bad.items():
            assert reason in failed[name]
        assert "cannot read file" in failed[vanishing.name]
        odd_rows = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey("timeline_frames"), asset_partitions=[ODD_NAME]
            ),
            limit=1,
        ).records[0]
        assert odd_rows.asset_materialization.metadata["dagster/row_count"].value == good[odd.stem]
        # no byte of the file outside the timelines folder reaches any output
        secret_file = layout.data_dir / "secret.txt"
        for path in layout.data_dir.rglob("*"):
            if path.is_file() and path.parent != layout.timelines_dir and path != secret_file:
                assert SECRET.encode() not in path.read_bytes(), path


def _start_pipeline(layout, home, preset, *extra):
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    command = [sys.executable, "-m", "xmlai_assets.cli", "run", "--data-dir", str(layout.data_dir)]
    return subprocess.Popen(
        [*command, "--preset", str(preset), *extra],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def small_layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(5):
        generate_timeline(seed, seconds=6, name=f"s{seed}").write(layout.timelines_dir)
    home = tmp_path / "home"
    home.mkdir()
    return layout, home


def test_training_killed_mid_epoch_resumes_when_materialized_again(
    small_layout, tmp_path, monkeypatch
):
    layout, home = small_layout
    settings = {**TINY_TRAIN, "epochs": 150, "patience": 200, "checkpoint_minutes": 0}
    config = {"ops": {"trained_model": {"config": settings}}}
    preset = tmp_path / "slow.yaml"
    preset.write_text(yaml.safe_dump(config))
    proc = _start_pipeline(layout, home, preset)
    deadline = time.monotonic() + 180
    while (
        not layout.train_checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert layout.train_checkpoint.exists() and not (layout.models.local_path() / "v0001").exists()

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert run_pipeline(layout, instance, config)
        md = materialization(instance, "trained_model")
        assert 1 <= md["resumed_from_epoch"] < 150
        assert md["epochs_run"] == 150
        assert (layout.models.local_path() / "v0001" / "model.safetensors").is_file()
        assert not layout.train_checkpoint.exists()


def test_two_runs_of_the_same_assets_at_once_both_finish_and_corrupt_nothing(
    small_layout, tmp_path
):
    layout, home = small_layout
    preset = tmp_path / "quick.yaml"
    preset.write_text(
        yaml.safe_dump({"ops": {"trained_model": {"config": {**TINY_TRAIN, "epochs": 2}}}})
    )
    # an instance in use, as in `make ui`: its storage exists and knows the folder's files
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        sync_timeline_partitions(instance, layout.timelines_dir)
    runs = [_start_pipeline(layout, home, preset) for _ in range(2)]
    for proc in runs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    # both wrote the same bytes in turn; the files are whole and pass their checks
    outputs = {
        p: p.read_bytes()
        for p in (
            layout.local(split_csv("train")),
            layout.local(sequences_npz("train")),
            layout.local(SCALERS_PKL),
        )
    }
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        assert {p: p.read_bytes() for p in outputs} == outputs
    with np.load(layout.local(sequences_npz("train"))) as data:
        assert data["sequences"].shape[1:] == (100, 180)
    assert sorted(
        p.name for p in layout.models.local_path().iterdir() if p.name.startswith("v")
    ) == [
        "v0001",
        "v0002",
    ]
    assert not list(layout.data_dir.rglob(".*.tmp")) and not list(
        layout.models.local_path().glob(".staging-*")
    )


def test_a_rerun_with_unchanged_inputs_leaves_training_up_to_date(small_layout):
    # the resolver behind the UI's "stale" badges
    from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
    from dagster._core.loader import LoadingContextForTest

    layout, _ = small_layout
    config = {"ops": {"trained_model": {"config": {**TINY_TRAIN, "epochs": 1}}}}
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, config)
        files = [
            layout.local(MASTER_CSV),
            layout.local(split_csv("train")),
            layout.local(split_csv("val")),
            layout.local(sequences_npz("train")),
            layout.local(sequences_npz("val")),
        ]
        before = {p: p.read_bytes() for p in files}
        assert run_pipeline(layout, instance, train=False)
        assert {p: p.read_bytes() for p in files} == before
        graph = build_definitions().resolve_asset_graph()
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        assert resolver.get_status(dg.AssetKey("trained_model")) == StaleStatus.FRESH
        # and a changed input does make it stale
        generate_timeline(42, seconds=6, name="s new").write(layout.timelines_dir)
        assert run_pipeline(layout, instance, train=False)
        resolver = CachingStaleStatusResolver(instance, graph, LoadingContextForTest(instance))
        assert resolver.get_status(dg.AssetKey("trained_model")) == StaleStatus.STALE
