"""Hostile partition keys, hostile files in the watched folder, damaged artifacts and killed
processes: nothing is read or written outside the folders, no file blocks the others, and
nothing needs a person to repair it."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import dagster as dg
import pandas as pd
import pytest
from dagster._core.instance.ref import InstanceRef

from xmlai_assets.atomic import TEMP_SUFFIX
from xmlai_assets.cli import fail_orphaned_runs, limit_writer_pools, run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs.resources import WRITER_POOLS, DataPaths
from xmlai_assets.features.split import SPLITS
from xmlai_assets.model.store import ModelStoreError, champion, load_model
from xmlai_assets.paths import MASTER_CSV, DataLayout, frames_parquet
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline.ingest import ingest_timeline_file
from xmlai_assets_tests.defs.test_ingest_assets import partition_status

TINY_TRAIN = {
    "d_model": 16,
    "n_heads": 2,
    "n_layers": 1,
    "d_ff": 32,
    "batch_size": 8,
    "epochs": 1,
}


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(3):
        generate_timeline(seed, seconds=5, name=f"good{seed}").write(layout.timelines_dir)
    return layout


def job_for(layout):
    defs = build_definitions(DataPaths(data_dir=str(layout.data_dir)))
    return defs.resolve_implicit_global_asset_job_def()


def snapshot(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_path_keys_and_links_read_and_write_nothing_outside_the_folders(layout, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    generate_timeline(7, seconds=5, name="outside").write(outside)
    (outside / "victim.parquet").write_bytes(b"keep me")
    (outside / "victim.json").write_bytes(b"keep me too")
    os.symlink(outside / "outside.xml", layout.timelines_dir / "link.xml")
    before = snapshot(outside)
    keys = [
        "../../outside/outside.xml",
        str(outside / "outside.xml"),
        "../outside/victim",
        "sub/dir.xml",
        "link.xml",
    ]
    job = job_for(layout)
    with dg.instance_for_test() as instance:
        # as the UI's addDynamicPartition would: Dagster OSS takes any key
        instance.add_dynamic_partitions("timeline_files", keys)
        for key in keys:
            result = job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey("timeline_frames")],
                partition_key=key,
                raise_on_error=False,
            )
            assert not result.success, key
        _, failed = partition_status(instance)
        assert failed == set(keys)
        assert snapshot(outside) == before
        written = [p for p in layout.data_dir.rglob("*") if p.parent != layout.timelines_dir]
        assert all(p.resolve().is_relative_to(layout.data_dir.resolve()) for p in written)
        # the next run drops the keys that name no file in the folder, and ingests no link
        assert run_pipeline(layout, instance, train=False)
        assert set(instance.get_dynamic_partitions("timeline_files")) == {
            "good0.xml",
            "good1.xml",
            "good2.xml",
        }
        master = pd.read_csv(layout.local(MASTER_CSV))
        assert set(master["video_id"]) == {"good0", "good1", "good2"}
    assert snapshot(outside) == before


def test_a_fifo_swapped_in_after_the_listing_is_refused_without_hanging(layout):
    target = layout.timelines_dir / "good1.xml"
    target.unlink()
    os.mkfifo(target)
    reports = []
    reader = threading.Thread(
        target=lambda: reports.append(ingest_timeline_file(layout, target.name))
    )
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # unblock the reader before failing
        with open(target, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert reports[0]["status"] == "failed"
    assert "not a regular file" in reports[0]["reason"]


def test_long_names_and_case_twins_neither_crash_nor_merge(layout):
    long_name = "l" * 246 + ".xml"  # 250 bytes: any temp name built from it passes 255
    generate_timeline(5, seconds=5, name="l" * 246).write(layout.timelines_dir)
    twin = layout.timelines_dir / "good0.XML"
    twin.write_bytes(generate_timeline(6, seconds=5, name="good0").to_xml())
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.local(MASTER_CSV))
        assert "l" * 246 in set(master["video_id"])
        md = instance.get_latest_materialization_event(dg.AssetKey("master_training_data"))
        failed = md.asset_materialization.metadata["failed_files"].data
        # one twin is in the master with its own rows, the other refused with the reason
        (refused,) = [k for k in ("good0.xml", "good0.XML") if k in failed]
        kept = "good0.XML" if refused == "good0.xml" else "good0.xml"
        assert "already taken" in failed[refused]
        assert (master["video_id"] == "good0").sum() == len(
            pd.read_parquet(layout.local(frames_parquet(kept)))
        )
        assert long_name in instance.get_dynamic_partitions("timeline_files")
    assert all(len(p.name.encode()) <= 255 for p in layout.data_dir.rglob("*"))


def test_a_truncated_master_is_refused_by_its_recorded_hash(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        lines = layout.local(MASTER_CSV).read_bytes().splitlines(keepends=True)
        layout.local(MASTER_CSV).write_bytes(b"".join(lines[: len(lines) // 2]))  # cut at a row end
        result = job_for(layout).execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(f"{split}_data") for split in SPLITS],
            raise_on_error=False,
        )
        assert not result.success
        failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
        assert "cut short or replaced" in failure.event_specific_data.error.message


def test_a_corrupt_checkpoint_is_set_aside_and_training_recovers(layout):
    layout.train_checkpoint.parent.mkdir(parents=True)
    layout.train_checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint at all")
    config = {"ops": {"trained_model": {"config": TINY_TRAIN}}}
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, config)
    assert (layout.models.local_path() / "v0001" / "model.safetensors").is_file()
    assert layout.train_checkpoint.with_name("trained_model.pt.unusable").is_file()


def test_damaged_model_files_and_a_hostile_champion_pointer_raise_model_store_error(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, {"ops": {"trained_model": {"config": TINY_TRAIN}}})
    models = layout.models.local_path()
    weights = models / "v0001" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelStoreError, match="cannot load model"):
        load_model("v0001", models)
    # the pointer the champion is read from: the latest generation, or an old store's file
    generations = sorted((models / "champions").glob("*.json"))
    pointer_file = generations[-1] if generations else models / "champion"
    for pointer in ("../../etc", "/etc/passwd", "v0001/../../x", ""):
        pointer_file.write_text(pointer)
        with pytest.raises(ModelStoreError):
            champion(models)
        with pytest.raises(ModelStoreError):
            load_model("champion", models)
    with pytest.raises(ModelStoreError):
        load_model("../v0001", models)


def test_concurrent_first_starts_create_one_usable_instance(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "xmlai_assets.cli", "init"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()[-2000:]
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert instance.get_runs() == []
        instance.add_dynamic_partitions("timeline_files", ["a.xml"])
        assert instance.get_dynamic_partitions("timeline_files") == ["a.xml"]
        # and every artifact's writers are one at a time, whatever dagster.yaml says
        for pool in WRITER_POOLS:
            assert instance.event_log_storage.get_concurrency_info(pool).slot_count == 1
        # a limit an operator set is kept
        instance.event_log_storage.set_concurrency_slots(WRITER_POOLS[0], 2)
        limit_writer_pools(instance)
        assert instance.event_log_storage.get_concurrency_info(WRITER_POOLS[0]).slot_count == 2


def test_a_killed_command_line_run_is_marked_failed_and_its_temp_files_removed(layout):
    from xmlai_assets.atomic import remove_stale_temp_files

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with dg.instance_for_test() as instance:
        run = instance.create_run_for_job(
            job_def=job_for(layout),
            status=dg.DagsterRunStatus.STARTED,
            tags={"xmlai/host": socket.gethostname(), "xmlai/pid": str(gone.pid)},
        )
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert fail_orphaned_runs(instance) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    frames = layout.local("frames")
    frames.mkdir(parents=True)
    stale = frames / f".x.parquet.{gone.pid}.abcd{TEMP_SUFFIX}"
    live = frames / f".y.parquet.{os.getpid()}.abcd{TEMP_SUFFIX}"
    for path in (stale, live):
        path.write_bytes(b"half")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert remove_stale_temp_files(frames) == [stale]
    assert live.exists() and not stale.exists()
    # and a version a killed trainer claimed and left half written: its files go, its claim
    # stays (the number is not handed out again), and a live writer's version is left alone
    from xmlai_assets.model.store import remove_abandoned_versions, versions

    models = layout.models
    for name, pid in (("v0001", gone.pid), ("v0002", os.getpid())):
        claim = {"host": socket.gethostname(), "pid": pid, "at": time.time() - 3600}
        models.create(f"{name}/claim.json", json.dumps(claim).encode())
        models.write_bytes(f"{name}/model.safetensors", b"half")
    assert remove_abandoned_versions(models) == ["v0001"]
    assert models.list("v0001") == ["claim.json"]
    assert models.list("v0002") == ["claim.json", "model.safetensors"]
    assert versions(models) == []  # neither was committed
