"""The whole lineage, XML files to an evaluated model version, on a temporary instance."""

import json

import dagster as dg
import numpy as np

from xmlai_assets.cli import run_pipeline
from xmlai_assets.definitions import build_definitions
from xmlai_assets.model.store import champion, load_model, predict, versions
from xmlai_assets.paths import DataLayout
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
        folder = layout.models_dir / "v0001"
        assert versions(layout.models_dir) == ["v0001"]
        assert md["version"] == str(folder)
        assert md["epochs_run"] == 3 and len(md["epochs"].records) == 3
        assert md["parameters"] > 0
        assert md["loss_curve"].startswith("![loss curve](data:image/png;base64,")
        rows = {r.data["metric"]: r.data for r in md["evaluation"].records}
        assert {"loss", "active_acc", "asset_acc", "x_mae", "change_loss"} <= set(rows)
        assert set(rows["loss"]) == {"metric", "model", "persistence", "majority_mean"}
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
        assert set(metadata["data_versions"]) == {"train_sequences", "val_sequences", "scalers"}
        assert metadata["metrics"]["model"]["loss"] == md["val_loss"]
        assert not layout.train_checkpoint.exists()  # a finished run leaves no checkpoint

        key = dg.AssetCheckKey(dg.AssetKey("trained_model"), "beats_persistence")
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
        result = record.event.dagster_event.event_specific_data
        beats = md["val_loss"] < md["persistence_val_loss"]
        assert result.passed is beats
        assert (champion(layout.models_dir) == "v0001") is beats
        assert md["champion"] is beats

        loaded = load_model("v0001", layout.models_dir)
        window = np.loadtxt(
            layout.val_csv, delimiter=",", skiprows=1, max_rows=20, usecols=range(3, 183)
        )
        step = predict(loaded, window)
        assert step.values.shape == (180,) and set(np.unique(step.values[0::9])) <= {0.0, 1.0}


def test_trained_model_sits_downstream_of_the_sequences_and_scalers():
    graph = build_definitions().resolve_asset_graph()
    node = graph.get(dg.AssetKey("trained_model"))
    assert {k.to_user_string() for k in node.parent_keys} == {
        "train_sequences",
        "val_sequences",
        "scalers",
    }
    assert node.group_name == "train" and node.code_version
    assert (
        dg.AssetCheckKey(dg.AssetKey("trained_model"), "beats_persistence")
        in graph.asset_check_keys
    )
