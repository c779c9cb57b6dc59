"""The whole lineage, XML files to an evaluated model version, on a temporary instance."""

import json

import dagster as dg
import numpy as np
import pytest

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.features.split import SPLITS
from xmlai_assets.model.config import BASELINES
from xmlai_assets.model.store import champion, load_model, predict, versions
from xmlai_assets.paths import DataLayout, split_csv
from xmlai_assets.synth import generate_timeline

TINY = {
    "ops": {
        "trained_model": {
            "config": {
                "d_model": 32,
                "n_heads": 4,
                "n_layers": 1,
                "d_ff": 64,
                "epochs": 3,
                "learning_rate": 0.003,
                "batch_size": 8,
            }
        }
    }
}


def test_xml_to_model_version(tmp_path):
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(6):
        generate_timeline(seed, seconds=12, name=f"tl {seed}").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, TINY)
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        md = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        folder = layout.models.local_path() / "v0001"
        assert versions(layout.models.local_path()) == ["v0001"]
        assert md["version"] == str(folder)
        assert md["epochs_run"] == 3 and len(md["epochs"].records) == 3
        assert md["parameters"] > 0
        assert md["loss_curve"].startswith("![loss curve](data:image/png;base64,")
        rows = {r.data["metric"]: r.data for r in md["evaluation"].records}
        assert {"loss", "active_acc", "asset_acc", "x_mae", "turn_on_ap"} <= set(rows)
        baselines = {"fair_copy", "hazard", "persistence", "majority_mean"}
        assert set(rows["loss"]) == {"metric", "model", *baselines}
        # the scorecard is the test split's; promotion's numbers are the validation split's
        assert md["scored_on"] == "test"
        assert md["hazard_test_loss"] == pytest.approx(rows["loss"]["hazard"], rel=1e-3)
        assert md["model_test_loss"] == pytest.approx(rows["loss"]["model"], rel=1e-3)
        for name in (
            "model.safetensors",
            "config.json",
            "metadata.json",
            "scalers.json",
            "loss_curve.png",
        ):
            assert (folder / name).is_file(), name
        metadata = json.loads((folder / "metadata.json").read_text())
        assert metadata["seed"] == 0 and metadata["packages"]["torch"]
        sequences = {f"{split}_sequences" for split in SPLITS}
        assert set(metadata["data_versions"]) == {*sequences, "scalers"}
        assert metadata["scored_on"] == "test" and metadata["test_windows"] > 0
        validation = metadata["validation_metrics"]["model"]["loss"]
        assert validation == pytest.approx(md["val_loss"], rel=1e-5)
        assert metadata["metrics"]["model"]["loss"] == pytest.approx(
            md["model_test_loss"], rel=1e-5
        )
        assert metadata["metrics"]["model"]["loss"] != validation  # two splits, two numbers
        assert not layout.train_checkpoint.exists()  # a finished run leaves no checkpoint

        key = dg.AssetCheckKey(dg.AssetKey("trained_model"), "promoted")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        result = record.event.dagster_event.event_specific_data
        baselines = [md[f"{name}_val_loss"] for name in BASELINES]
        beats = md["val_loss"] < min(baselines)  # and there was no champion
        assert result.passed is beats is md["promoted"]
        assert (champion(layout.models.local_path()) == "v0001") is beats
        assert "champion" not in md  # a version's own metadata never claims the title

        loaded = load_model("v0001", layout.models.local_path())
        window = np.loadtxt(
            layout.local(split_csv("val")),
            delimiter=",",
            skiprows=1,
            max_rows=20,
            usecols=range(3, 183),
        )
        step = predict(loaded, window)
        assert step.values.shape == (180,) and set(np.unique(step.values[0::9])) <= {0.0, 1.0}


def test_trained_model_sits_downstream_of_the_sequences_and_scalers():
    graph = build_definitions().resolve_asset_graph()
    node = graph.get(dg.AssetKey("trained_model"))
    assert {k.to_user_string() for k in node.parent_keys} == {
        "train_sequences",
        "val_sequences",
        "test_sequences",
        "scalers",
        "timeline_xml",  # so a changed folder marks the model stale, not only the master
    }
    assert node.group_name == "train" and node.code_version
    assert dg.AssetCheckKey(dg.AssetKey("trained_model"), "promoted") in graph.asset_check_keys


def champion_events(instance):
    records = instance.fetch_materializations(dg.AssetKey("champion_model"), limit=100).records
    return [r.asset_materialization.metadata for r in records]


def test_the_champion_moves_only_to_a_better_model_scored_on_the_same_windows(
    tmp_path, monkeypatch
):
    from xmlai_assets.model import pipeline

    # Tiny models on a tiny corpus rarely beat the baselines; weak baselines here let the
    # champion comparison alone decide.
    real = pipeline.evaluate_against_baselines

    def weak_copy(*args, **kwargs):
        metrics = real(*args, **kwargs)
        for name in BASELINES:
            metrics[name]["loss"] *= 100
        return metrics

    monkeypatch.setattr(pipeline, "evaluate_against_baselines", weak_copy)
    layout = DataLayout.at(tmp_path / "data")
    for seed in range(8):
        generate_timeline(seed, seconds=30, name=f"tl {seed}").write(layout.timelines_dir)
    good = {**TINY["ops"]["trained_model"]["config"], "epochs": 10}
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, {"ops": {"trained_model": {"config": good}}})
        assert champion(layout.models.local_path()) == "v0001"
        (first,) = champion_events(instance)
        assert first["version_name"].value == "v0001"

        # new data (a new validation split) and a model that barely trained: not promoted
        generate_timeline(40, seconds=30, name="tl new").write(layout.timelines_dir)
        # (without the prior: with it, an untrained model is the baselines, which are strong)
        weak = {**good, "epochs": 1, "learning_rate": 1e-6, "prior": "none"}
        assert run_pipeline(layout, instance, {"ops": {"trained_model": {"config": weak}}})
        md = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        md = md.asset_materialization.metadata
        assert md["promoted"].value is False
        assert "does not beat" in md["promotion"].value
        assert champion(layout.models.local_path()) == "v0001"
        assert len(champion_events(instance)) == 1
        # the old champion was scored on the new version's validation windows (promotion) and
        # test windows (the scorecard)
        metadata = json.loads((layout.models.local_path() / "v0002" / "metadata.json").read_text())
        assert metadata["validation_metrics"]["champion"]["loss"] == pytest.approx(
            md["previous_champion_val_loss"].value, rel=1e-3
        )
        rows = {r.data["metric"]: r.data for r in md["evaluation"].records}
        assert rows["loss"]["champion"] == pytest.approx(
            metadata["metrics"]["champion"]["loss"], rel=1e-3
        )

        # a model trained longer on the same data beats it: promoted, and only it is champion
        strong = {**good, "epochs": 30}
        assert run_pipeline(layout, instance, {"ops": {"trained_model": {"config": strong}}})
        md = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        md = md.asset_materialization.metadata
        assert md["promoted"].value is True, md["promotion"].value
        assert champion(layout.models.local_path()) == "v0003"
        latest = champion_events(instance)[0]
        assert latest["version_name"].value == "v0003"
        assert latest["previous_champion"].value == "v0001"


def test_versions_on_a_store_url_and_a_champion_that_moves_during_training(tmp_path, monkeypatch):
    """The models store at a URL (fsspec's in-memory filesystem: the object-store path); a
    second trainer promotes while this one evaluates: this version is kept, not promoted."""
    import uuid

    from xmlai_assets.artifacts import ArtifactStore
    from xmlai_assets.model import pipeline
    from xmlai_assets.model.store import champion_history, set_champion

    real_evaluate, real_decide = pipeline.evaluate_against_baselines, pipeline.decide_promotion

    def weak_copy(*args, **kwargs):
        metrics = real_evaluate(*args, **kwargs)
        for name in BASELINES:
            metrics[name]["loss"] *= 100
        return metrics

    url = f"memory://models-{uuid.uuid4().hex}"
    store = ArtifactStore(url)

    def decide_while_another_trainer_promotes(*args, **kwargs):
        decision = real_decide(*args, **kwargs)
        if versions(store):
            set_champion(store, versions(store)[0])  # the other trainer's promotion
        return decision

    monkeypatch.setattr(pipeline, "evaluate_against_baselines", weak_copy)
    monkeypatch.setattr(pipeline, "decide_promotion", decide_while_another_trainer_promotes)
    layout = DataLayout.at(tmp_path / "data", models_url=url)
    for seed in range(6):
        generate_timeline(seed, seconds=12, name=f"tl {seed}").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, TINY)
        assert versions(store) == ["v0001"] and champion(store) == "v0001"
        assert not (layout.data_dir / "models").exists()
        md = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        md = md.asset_materialization.metadata
        assert md["version"].value == f"{url}/v0001"

        longer = {**TINY["ops"]["trained_model"]["config"], "epochs": 10}
        assert run_pipeline(layout, instance, {"ops": {"trained_model": {"config": longer}}})
        md = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        md = md.asset_materialization.metadata
        assert versions(store) == ["v0001", "v0002"]
        assert md["promoted"].value is False
        assert "the champion moved" in md["promotion"].value
        assert [g["version"] for g in champion_history(store)] == ["v0001", "v0001"]
        assert len(champion_events(instance)) == 1  # no champion_model for the refused swap
        rows = {r.data["version"]: r.data["promoted"] for r in md["versions"].records}
        assert rows == {"v0001": True, "v0002": False}


def test_the_whole_lineage_on_a_store_url_writes_the_bytes_of_the_local_default(tmp_path):
    """Every artifact, XML to model version, in an object store (fsspec's in-memory filesystem
    takes the object-store code path) is byte for byte what the default data folder holds,
    and nothing but the timelines is on the local disk."""
    import uuid

    from xmlai_assets.artifacts import ArtifactStore
    from xmlai_assets.paths import ARTIFACTS, frames_parquet, frames_report

    url = f"memory://xmlai-{uuid.uuid4().hex}"
    local = DataLayout.at(tmp_path / "local")
    remote = DataLayout.at(tmp_path / "remote", data_url=url)
    for seed in range(6):
        timeline = generate_timeline(seed, seconds=12, name=f"tl {seed}")
        timeline.write(local.timelines_dir)
        timeline.write(remote.timelines_dir)
    for layout in (local, remote):
        with dg.instance_for_test() as instance:
            assert run_pipeline(layout, instance, TINY)
            event = instance.get_latest_materialization_event(dg.AssetKey("master_training_data"))
            path = event.asset_materialization.metadata["path"].value
            assert path == layout.artifacts.location(ARTIFACTS["master_training_data"][0])
    assert sorted(p.name for p in (tmp_path / "remote").iterdir()) == ["timelines"]
    assert remote.models.url == f"{url}/models" and ArtifactStore(url).exists(
        "models/v0001/metadata.json"
    )
    names = [name for names in ARTIFACTS.values() for name in names]
    names += [frames_parquet(path.name) for path in local.timelines_dir.iterdir()]
    names += [f"models/v0001/{f}" for f in ("model.safetensors", "scalers.json", "config.json")]
    for name in names:
        assert local.artifacts.read_bytes(name) == remote.artifacts.read_bytes(name), name
    key = next(local.timelines_dir.iterdir()).name
    reports = [json.loads(lay.artifacts.read_bytes(frames_report(key))) for lay in (local, remote)]
    assert reports[0]["frames_sha256"] == reports[1]["frames_sha256"]


def test_training_on_a_store_url_resumes_on_an_empty_disk_from_the_stores_checkpoint(tmp_path):
    """A training pod's disk goes with the pod: where the artifacts are remote, each checkpoint
    is copied there, a new host resumes from that copy, and a finished run removes it."""
    import uuid

    from xmlai_assets.model.pipeline import fit_model
    from xmlai_assets.model.train import TrainConfig
    from xmlai_assets.paths import TRAIN_CHECKPOINT

    layout = DataLayout.at(tmp_path / "pod", data_url=f"memory://xmlai-{uuid.uuid4().hex}")
    for seed in range(5):
        generate_timeline(seed, seconds=12, name=f"tl {seed}").write(layout.timelines_dir)
    with dg.instance_for_test() as instance:
        assert run_pipeline(layout, instance, train=False)
    settings = TINY["ops"]["trained_model"]["config"]
    config = TrainConfig(**{**settings, "epochs": 4, "patience": 10, "checkpoint_minutes": 0})

    class PodLost(Exception):
        pass

    def lost_in_epoch_3(line: str) -> None:
        if line.startswith("epoch 3/"):  # logged before epoch 3's checkpoint is written
            raise PodLost

    with pytest.raises(PodLost):
        fit_model(layout, config, log=lost_in_epoch_3)
    assert layout.artifacts.exists(TRAIN_CHECKPOINT)
    layout.train_checkpoint.unlink()  # a new pod: nothing on its disk
    lines = []
    summary = fit_model(layout, config, log=lines.append)
    assert any(line.startswith("checkpoint fetched from memory://") for line in lines), lines
    assert summary.result.resumed_from_epoch == 2
    assert [r.epoch for r in summary.result.history] == [1, 2, 3, 4]
    assert not layout.artifacts.exists(TRAIN_CHECKPOINT)
    assert not layout.train_checkpoint.exists()


def test_a_checkpoint_copy_that_fails_is_said_and_leaves_nothing(tmp_path):
    import uuid

    from xmlai_assets.model.pipeline import keep_checkpoint
    from xmlai_assets.paths import TRAIN_CHECKPOINT

    layout = DataLayout.at(tmp_path, data_url=f"memory://xmlai-{uuid.uuid4().hex}")
    lines = []
    keep_checkpoint(layout, tmp_path / "gone.pt", log=lines.append)  # nothing to copy
    assert len(lines) == 1 and lines[0].startswith(
        f"warning: checkpoint not copied to {layout.artifacts.location(TRAIN_CHECKPOINT)}"
    )
    assert lines[0].endswith("training goes on")
    assert not layout.artifacts.exists(TRAIN_CHECKPOINT)


def test_a_checkpoint_removal_that_fails_is_said_and_the_run_stands(tmp_path, monkeypatch):
    import uuid

    from xmlai_assets.artifacts import ArtifactStore
    from xmlai_assets.model.pipeline import drop_checkpoint
    from xmlai_assets.paths import TRAIN_CHECKPOINT

    layout = DataLayout.at(tmp_path, data_url=f"memory://xmlai-{uuid.uuid4().hex}")
    layout.artifacts.write_bytes(TRAIN_CHECKPOINT, b"state")

    def refused(store, name):
        raise PermissionError(f"{name}: access denied")

    monkeypatch.setattr(ArtifactStore, "delete", refused)
    lines = []
    drop_checkpoint(layout, log=lines.append)
    assert lines == [
        f"warning: checkpoint {layout.artifacts.location(TRAIN_CHECKPOINT)} not removed "
        f"(PermissionError: {TRAIN_CHECKPOINT}: access denied)"
    ]


def test_promotion_needs_every_baseline_and_the_champion_beaten():
    from xmlai_assets.model.pipeline import decide_promotion

    def metrics(model, champ=None, **baselines):
        m = {"model": {"loss": model}} | {name: {"loss": 0.2} for name in BASELINES}
        m |= {name: {"loss": loss} for name, loss in baselines.items()}
        return m | ({"champion": {"loss": champ}} if champ is not None else {})

    first = decide_promotion(metrics(0.1), None, "there is no champion yet")
    assert first.promoted and "every baseline" in first.reason
    # beaten by any one baseline, by the strongest: it names that one
    lost = decide_promotion(metrics(0.15, fair_copy=0.14, hazard=0.12), None)
    assert not lost.promoted and "best baseline, hazard (0.1200)" in lost.reason
    assert not decide_promotion(metrics(0.3), None).promoted
    assert decide_promotion(metrics(0.1, 0.15), "v0001").promoted
    worse = decide_promotion(metrics(0.145, 0.081), "v0001")
    assert not worse.promoted and "champion v0001" in worse.reason
    assert worse.previous_loss == 0.081
    # a baseline that scored nothing (NaN) is no bar
    assert decide_promotion(metrics(0.1, hazard=float("nan")), None).promoted
