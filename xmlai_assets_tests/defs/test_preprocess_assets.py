"""The preprocess assets and their blocking checks, materialized from XML files."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.defs.ingest import assets as ingest_assets
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.features.split import SPLITS
from xmlai_assets.features.windows import read_npz
from xmlai_assets.paths import (
    MASTER_CSV,
    SCALERS_JSON,
    SCALERS_PKL,
    DataLayout,
    sequences_npz,
    split_csv,
)
from xmlai_assets.synth import generate_timeline

PREPROCESS = (
    *(f"{split}_data" for split in SPLITS),
    "scalers",
    *(f"{split}_sequences" for split in SPLITS),
)
BLOCKING = {
    ("master_training_data", "master_data_valid"),
    *((f"{split}_sequences", "sequences_well_formed") for split in SPLITS),
    ("val_sequences", "split_as_configured"),
}


@pytest.fixture
def layout(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(6):
        generate_timeline(seed, seconds=8 + 3 * seed, name=f"tl {seed}").write(layout.timelines_dir)
    return layout


def metadata(instance, key):
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return None if event is None else event.asset_materialization.metadata


def check_result(instance, asset, name):
    key = dg.AssetCheckKey(dg.AssetKey(asset), name)
    record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key]).get(key)
    return record.event.dagster_event.event_specific_data if record and record.event else None


def artifacts(layout):
    paths = [layout.local(SCALERS_PKL), layout.local(SCALERS_JSON)]
    paths += [layout.local(split_csv(s)) for s in SPLITS] + [
        layout.local(sequences_npz(s)) for s in SPLITS
    ]
    return {p.name: p.read_bytes() for p in paths}


def test_materialize_from_xml_to_sequences(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        master = pd.read_csv(layout.local(MASTER_CSV))
        sides = {split: pd.read_csv(layout.local(split_csv(split))) for split in SPLITS}
        train, val, test = (sides[split] for split in SPLITS)
        assert sum(map(len, sides.values())) == len(master)
        videos = [set(side["video_id"]) for side in sides.values()]
        assert sum(map(len, videos)) == len(set().union(*videos)) == 6
        # 6 timelines at 0.15 each: 1 for validation, 1 for the test, 4 to train on
        assert val["video_id"].nunique() == test["video_id"].nunique() == 1

        for asset, name in BLOCKING:
            result = check_result(instance, asset, name)
            assert result.passed, (asset, name, result.metadata)

        md = {key: metadata(instance, key) for key in PREPROCESS}
        assert md["train_data"]["dagster/row_count"].value == len(train)
        assert md["val_data"]["video_ids"].value == sorted(val["video_id"].unique())
        assert md["train_data"]["val_fraction"].value == 0.15
        assert md["test_data"]["test_fraction"].value == 0.15
        stats = {r.data["param"]: r.data for r in md["scalers"]["statistics"].value.records}
        assert sorted(stats) == ["crop_b", "crop_l", "crop_r", "crop_t", "scale", "x", "y"]
        scale = np.concatenate(
            [train[f"target_v{t}_scale"][train[f"target_v{t}_active"] == 1] for t in range(1, 21)]
        )
        assert stats["scale"]["count"] == len(scale)
        assert stats["scale"]["center"] == pytest.approx(scale.mean())
        doc = json.loads(layout.local(SCALERS_JSON).read_text())
        assert doc["params"]["scale"]["scale"] == pytest.approx(scale.std())
        assert doc["fitted_on"] == {"split": "train", "rows": len(train), "videos": 4}

        for split, frame in sides.items():
            seq = read_npz(layout.local(sequences_npz(split)))
            m = md[f"{split}_sequences"]
            assert seq.sequences.shape[1:] == (100, 180)
            assert m["shapes"].value["sequences"] == list(seq.sequences.shape)
            assert m["windows"].value == len(seq.masks)
            # every row of the split is in a window; overlapping steps count once per window
            assert m["real_steps"].value == seq.masks.sum() >= len(frame)
            assert m["valid_step_ratio"].value == pytest.approx(seq.masks.mean())
            active = seq.sequences[seq.masks][:, 0::9]
            assert m["active_histogram"].value == {
                "0": int((active == 0).sum()),
                "1": int(active.sum()),
            }
            assert sum(m["asset_histogram"].value.values()) == int(active.sum())
            assert sorted(set(seq.video_ids)) == sorted(frame["video_id"].unique())
            assert m["size_bytes"].value == layout.local(sequences_npz(split)).stat().st_size


def test_rerun_gives_identical_bytes_and_data_versions(layout):
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        first = artifacts(layout)
        versions = {k: metadata(instance, k)["sha256"].value for k in PREPROCESS}
        assert run_pipeline(layout, instance, train=False)
        assert artifacts(layout) == first
        assert {k: metadata(instance, k)["sha256"].value for k in PREPROCESS} == versions
        assert not list(layout.data_dir.glob(".*.tmp"))


def test_configured_split_and_windows_are_used_and_checked(layout):
    defs = build_definitions(DataPaths(data_dir=str(layout.data_dir)))
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(k) for k in PREPROCESS],
            run_config={
                "ops": {
                    "video_split": {
                        "config": {"val_fraction": 0.5, "test_fraction": 0.2, "seed": 4}
                    },
                    "scalers": {"config": {"kind": "minmax"}},
                    "training_sequences": {"config": {"window": 20, "stride": 10}},
                }
            },
        )
        assert result.success
        assert len(metadata(instance, "test_data")["video_ids"].value) == 1
        assert len(metadata(instance, "val_data")["video_ids"].value) == 3
        assert metadata(instance, "scalers")["kind"].value == "minmax"
        assert read_npz(layout.local(sequences_npz("val"))).sequences.shape[1:] == (20, 180)
        assert check_result(instance, "val_sequences", "split_as_configured").passed
        assert check_result(instance, "train_sequences", "sequences_well_formed").passed

        bad = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(f"{split}_sequences") for split in SPLITS],
            run_config={"ops": {"training_sequences": {"config": {"window": 20, "stride": 30}}}},
            raise_on_error=False,
        )
        assert not bad.success
        failure = bad.failure_data_for_node("training_sequences")
        assert "stride" in failure.error.cause.message


def test_a_failing_blocking_check_stops_everything_downstream(layout, monkeypatch, capsys):
    real_build = ingest_assets.build_master_csv

    def build_then_break(layout, names, previous=None):
        summary = real_build(layout, names, previous)
        df = pd.read_csv(layout.local(MASTER_CSV))
        df.loc[3, "target_v1_crop_l"] = 150.0
        df.to_csv(layout.local(MASTER_CSV), index=False)
        return summary

    monkeypatch.setattr(ingest_assets, "build_master_csv", build_then_break)
    with dg.instance_for_test() as instance:
        assert not run_pipeline(layout, instance)  # training included: it must not start
        # the command line says which check failed and why, as the UI does
        out = capsys.readouterr().out
        assert "check failed: master_training_data master_data_valid" in out
        assert "target_v1_crop_l: outside 0..100: 1 rows" in out
        result = check_result(instance, "master_training_data", "master_data_valid")
        assert result.passed is False
        problems = result.metadata["problems"].value
        assert problems == [
            "target_v1_crop_l: outside 0..100: 1 rows, first: 150.0 at line 5 (video 'tl 0')"
        ]
        assert metadata(instance, "master_training_data") is not None
        for key in (*PREPROCESS, "trained_model"):
            assert metadata(instance, key) is None, key
        assert (
            not layout.local(split_csv("train")).exists()
            and not layout.local(sequences_npz("train")).exists()
        )
        assert not layout.models.local_path().exists()


def test_preprocess_lineage_and_checks_in_the_definitions():
    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    parents = {
        k: {p.to_user_string() for p in graph.get(dg.AssetKey(k)).parent_keys} for k in PREPROCESS
    }
    assert parents == {
        "train_data": {"master_training_data", "timeline_xml"},
        "val_data": {"master_training_data", "timeline_xml"},
        "test_data": {"master_training_data", "timeline_xml"},
        "scalers": {"train_data", "timeline_xml"},  # fitted on the training split alone
        "train_sequences": {"train_data", "scalers", "timeline_xml"},
        "val_sequences": {"val_data", "scalers", "timeline_xml"},
        "test_sequences": {"test_data", "scalers", "timeline_xml"},
    }
    for key in PREPROCESS:
        node = graph.get(dg.AssetKey(key))
        assert node.group_name == "preprocess" and node.code_version and node.description
    checks = {
        (k.asset_key.to_user_string(), k.name): graph.get_check_spec(k).blocking
        for k in graph.asset_check_keys
    }
    assert {c for c, blocking in checks.items() if blocking} == BLOCKING
