"""Safe defaults: the UI on loopback only, no telemetry, weights that load without code."""

import re

import yaml

from xmlai_assets.paths import DEFAULT_DAGSTER_HOME, PROJECT_ROOT


def test_the_ui_binds_to_loopback_unless_told_otherwise():
    ui = re.search(r"^ui:.*?\n((?:\t.*\n)+)", (PROJECT_ROOT / "Makefile").read_text(), re.M)
    assert ui and "--host 127.0.0.1" in ui.group(1)


def test_the_instance_sends_no_telemetry():
    config = yaml.safe_load((DEFAULT_DAGSTER_HOME / "dagster.yaml").read_text())
    assert config["telemetry"]["enabled"] is False


def test_model_files_load_without_unpickling():
    source = (PROJECT_ROOT / "xmlai_assets" / "model" / "train.py").read_text()
    assert "weights_only=True" in source and "weights_only=False" not in source
    store = (PROJECT_ROOT / "xmlai_assets" / "model" / "store.py").read_text()
    assert "safetensors" in store and "torch.load" not in store
