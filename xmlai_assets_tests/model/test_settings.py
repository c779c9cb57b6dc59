"""Training settings have one shape: TrainConfig. The launchpad's config is that class, and
each YAML preset is what it says it is."""

import dagster as dg
import pytest
import yaml

from xmlai_assets.defs.train.assets import TrainModelConfig
from xmlai_assets.model.config import TrainConfig
from xmlai_assets.paths import PROJECT_ROOT


def preset(name: str) -> dict:
    config = yaml.safe_load((PROJECT_ROOT / "configs" / name).read_text())
    return config["ops"]["trained_model"]["config"]


def test_the_full_preset_spells_out_every_default_and_nothing_else():
    assert preset("train_full.yaml") == TrainConfig().as_dict()


def test_the_quick_preset_is_a_valid_smaller_model():
    quick = TrainConfig.from_dict(preset("train_quick.yaml"))
    full = TrainConfig()
    assert quick.d_model < full.d_model and quick.n_layers < full.n_layers


def test_the_launchpad_config_is_train_config_with_its_defaults_and_descriptions():
    assert issubclass(TrainModelConfig, TrainConfig) and issubclass(TrainModelConfig, dg.Config)
    assert TrainModelConfig().model_dump() == TrainConfig().as_dict()
    for name, field in TrainConfig.model_fields.items():
        assert field.description, name


def test_an_unknown_or_mistyped_setting_is_refused_with_its_name():
    with pytest.raises(ValueError, match="unknown training settings \\['epoch'\\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="sawtooth")
