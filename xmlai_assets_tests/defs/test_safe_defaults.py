"""Safe defaults: the UI on loopback only, no telemetry, weights that load without code."""

import re
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

from xmlai_assets.model.store import save_version
from xmlai_assets.model.train import load_checkpoint
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
from xmlai_assets.paths import DEFAULT_DAGSTER_HOME, PROJECT_ROOT


def test_the_ui_binds_to_loopback_unless_told_otherwise():
    ui = re.search(r"^ui:.*?\n((?:\t.*\n)+)", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert ui and "--host 127.0.0.1" in ui.group(1)


def test_the_instance_sends_no_telemetry():
    config = yaml.safe_load((DEFAULT_DAGSTER_HOME / "dagster.yaml").read_text())
    assert config["telemetry"]["enabled"] is False


class Payload:
    """Stands for code a tampered file would run if it were unpickled."""

    def __reduce__(self):
        return (print, ("ran code from a file",))


def test_a_checkpoint_holding_code_is_refused_not_run(tmp_path, capsys):
    path = tmp_path / "trained_model.pt"
    torch.save({"model": {}, "extra": Payload()}, path)
    warnings = []
    assert load_checkpoint(path, warnings.append) is None
    assert "ran code from a file" not in capsys.readouterr().out
    assert "unusable" in warnings[0] and "UnpicklingError" in warnings[0]
    assert not path.exists() and path.with_name("trained_model.pt.unusable").exists()


def test_model_weights_are_safetensors_that_hold_only_tensors(tmp_path):
    model = MultiTrackTransformer(ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32))
    scalers = tmp_path / "scalers.json"
    scalers.write_text("{}")
    saved = save_version(
        tmp_path / "models", model, config={}, metadata={}, scalers_json=scalers.read_bytes()
    )
    folder = Path(saved.location)
    with safe_open(folder / "model.safetensors", framework="pt") as weights:
        assert set(weights.keys()) == set(model.state_dict())
    assert not list(folder.glob("*.pt")) and not list(folder.glob("*.pkl"))
