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


def test_the_gpu_preset_is_the_defaults_scaled_to_its_batch_by_the_rule():
    gpu = TrainConfig.from_dict(preset("train_gpu.yaml"))
    assert gpu == TrainConfig(device="cuda").scaled_to(512, lr_factor=2.0)


def test_scaling_to_a_larger_batch_follows_the_square_root_rule():
    base = TrainConfig(batch_size=16, learning_rate=1e-4, epochs=50, patience=8)
    big = base.scaled_to(256)  # sqrt(256 / 16) = 4
    assert (big.batch_size, big.learning_rate, big.epochs, big.patience) == (256, 4e-4, 200, 32)
    assert big.warmup_fraction == base.warmup_fraction and big.d_model == base.d_model
    assert base.scaled_to(256, lr_factor=2.0).learning_rate == 8e-4


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


def test_learning_rate_warms_up_then_follows_a_cosine_to_zero():
    from xmlai_assets.model.train import learning_rate

    config = TrainConfig(learning_rate=1e-3, warmup_fraction=0.1, schedule="cosine")
    rates = [learning_rate(config, u, 100, decayed=1e-3) for u in range(101)]
    assert rates[0] == pytest.approx(1e-4)  # 1 of 10 warmup updates
    assert rates[9] == pytest.approx(1e-3) == max(rates)
    assert rates[55] == pytest.approx(0.5e-3)  # halfway through the decay
    assert rates[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(rates[9:], rates[10:], strict=False))


def test_step_and_plateau_decay_at_the_end_of_an_epoch():
    from xmlai_assets.model.train import TrainState, decay_after_epoch

    step = TrainConfig(learning_rate=1.0, schedule="step", step_epochs=2, step_gamma=0.5)
    state = TrainState(decayed=1.0)
    seen = []
    for epoch in range(1, 6):
        state.epoch = epoch
        decay_after_epoch(step, state, val_loss=1.0)
        seen.append(state.decayed)
    assert seen == [1.0, 0.5, 0.5, 0.25, 0.25]

    plateau = TrainConfig(learning_rate=1.0, schedule="plateau", plateau_patience=1)
    state = TrainState(decayed=1.0)
    for loss in (1.0, 0.9, 0.9, 0.9):  # better, then two epochs without improvement
        decay_after_epoch(plateau, state, loss)
    assert state.decayed == 0.5


def test_the_track_vocabulary_is_one_table_that_the_model_follows():
    from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
    from xmlai_assets.timeline.asset_classes import ASSET_RULES
    from xmlai_assets.timeline.schema import (
        ACTIVE,
        ASSET,
        ASSET_CLASS_NAMES,
        CONTINUOUS_PARAMS,
        TRACK_PARAMS,
        VALUES,
    )

    assert (TRACK_PARAMS[ACTIVE], TRACK_PARAMS[ASSET]) == ("active", "asset")
    assert TRACK_PARAMS[VALUES] == CONTINUOUS_PARAMS
    model = MultiTrackTransformer(ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32))
    import torch

    out = model(torch.zeros(1, 3, 20 * len(TRACK_PARAMS)))
    assert out["asset"].shape[-1] == len(ASSET_CLASS_NAMES)
    assert set(CONTINUOUS_PARAMS) <= set(out)
    for cls in (ASSET_RULES.image, ASSET_RULES.text, ASSET_RULES.nest, ASSET_RULES.other_video):
        assert 0 <= cls < len(ASSET_CLASS_NAMES)
