"""The model: every head for any batch and length, causal, blind to padding, fair at init."""

import math

import pytest
import torch

from xmlai_assets.model.loss import next_step_loss
from xmlai_assets.model.transformer import HEADS, ModelConfig, MultiTrackTransformer
from xmlai_assets_tests.model.windows_factory import random_windows

TINY = ModelConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return MultiTrackTransformer(TINY).eval()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("length", [1, 7])
@pytest.mark.parametrize("with_mask", [True, False])
def test_every_head_for_any_batch_length_and_padding(model, batch, length, with_mask):
    data = random_windows(batch, length, pad=with_mask)
    masks = data.masks if with_mask else None
    out = model(data.sequences, masks)
    assert set(out) == set(HEADS)
    assert out["active"].shape == (batch, length, 20, 2)
    assert out["asset"].shape == (batch, length, 20, 10)
    for param in HEADS[2:]:
        assert out[param].shape == (batch, length, 20)
    assert all(torch.isfinite(v).all() for v in out.values())


def test_gradients_reach_every_parameter(model):
    model.train()
    data = random_windows(4, 12, pad=False)
    loss, _ = next_step_loss(model(data.sequences, data.masks), data.sequences, data.masks)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []


def test_changing_a_later_step_leaves_earlier_predictions_unchanged(model):
    data = random_windows(2, 10, pad=False)
    before = model(data.sequences, data.masks)
    changed = data.sequences.clone()
    changed[:, 6] = torch.randn_like(changed[:, 6])
    changed[:, 6, 0::9] = 1.0
    after = model(changed, data.masks)
    for head in HEADS:
        torch.testing.assert_close(after[head][:, :6], before[head][:, :6], rtol=0, atol=1e-6)
        assert not torch.allclose(after[head][:, 6:], before[head][:, 6:])


def test_padded_steps_change_neither_loss_nor_gradients():
    torch.manual_seed(1)
    model = MultiTrackTransformer(TINY)
    model.train()
    data = random_windows(4, 10, pad=True)
    assert (~data.masks).any()

    def loss_and_grads(sequences):
        model.zero_grad()
        loss, _ = next_step_loss(model(sequences, data.masks), sequences, data.masks)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, grads = loss_and_grads(data.sequences)
    noisy = data.sequences.clone()
    noisy[~data.masks] = torch.randn_like(noisy[~data.masks]) * 50
    noisy_loss, noisy_grads = loss_and_grads(noisy)
    torch.testing.assert_close(noisy_loss, loss, rtol=0, atol=1e-6)
    for a, b in zip(grads, noisy_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_loss_at_initialization_is_that_of_uniform_guessing():
    torch.manual_seed(2)
    model = MultiTrackTransformer(ModelConfig(d_model=64, n_heads=4, n_layers=2, d_ff=128))
    data = random_windows(8, 30, pad=False)
    _, losses = next_step_loss(model(data.sequences, data.masks), data.sequences, data.masks)
    assert losses["active"].item() == pytest.approx(math.log(2), abs=0.05)
    assert losses["asset"].item() == pytest.approx(math.log(10), abs=0.1)


def test_each_encoder_layer_starts_with_its_own_weights(model):
    first, second = model.layers[0], model.layers[1]
    assert not torch.equal(first.linear1.weight, second.linear1.weight)
    assert not torch.equal(first.self_attn.in_proj_weight, second.self_attn.in_proj_weight)


def test_classes_enter_one_hot_not_as_numbers(model):
    data = random_windows(1, 3, pad=False)
    encoded = model.encode_inputs(data.sequences).reshape(1, 3, 20, 19)
    tracks = data.sequences.reshape(1, 3, 20, 9)
    assert torch.equal(encoded[..., :2].argmax(-1), tracks[..., 0].long())
    assert torch.equal(encoded[..., 2:12].argmax(-1), tracks[..., 1].long())
    assert torch.equal(encoded[..., :12].sum(-1), torch.full((1, 3, 20), 2.0))
    assert torch.equal(encoded[..., 12:], tracks[..., 2:])


GATED = ModelConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, dropout=0.0, value_head="gated")


def test_a_held_value_is_the_current_one_exactly_and_costs_nothing():
    from xmlai_assets.model.loss import element_losses, next_step_targets
    from xmlai_assets.timeline.schema import ACTIVE, CONTINUOUS_PARAMS, VALUES

    torch.manual_seed(0)
    model = MultiTrackTransformer(GATED).eval()
    with torch.no_grad():
        model.move_head.bias.fill_(-50.0)  # every gate says hold
    data = random_windows(3, 9, seed=4, pad=False)
    tracks = data.sequences.reshape(3, 9, 20, 9)
    held = tracks.clone()
    held[:, 1:] = held[:, :1]  # nothing moves after the first step
    sequences = held.reshape(3, 9, -1)
    out = model(sequences, data.masks)
    on = held[..., ACTIVE] > 0.5
    for i, param in enumerate(CONTINUOUS_PARAMS):
        assert torch.equal(out[param][on], held[..., VALUES][..., i][on]), param
    losses = element_losses(out, next_step_targets(sequences, data.masks))
    for param in CONTINUOUS_PARAMS:
        loss, weight = losses[param]
        assert weight.sum() > 0 and (loss * weight).sum().item() == 0.0
    # a track off screen is not held: its value, should it come on, is the predicted one
    off = ~on
    assert not torch.equal(out["x"][off], held[..., VALUES][..., 1][off])


def test_the_gate_and_the_change_learn_from_the_training_loss():
    from xmlai_assets.model.loss import training_loss

    torch.manual_seed(0)
    model = MultiTrackTransformer(GATED).train()
    data = random_windows(4, 10, seed=5)
    loss = training_loss(model(data.sequences, data.masks), data.sequences, data.masks)
    loss.backward()
    assert torch.isfinite(loss)
    for head in (model.move_head, model.value_head, model.active_head):
        assert head.weight.grad.abs().sum() > 0
    # the gated model sees the last step's change: 8 more inputs per track
    assert model.input.in_features == MultiTrackTransformer(TINY).input.in_features + 20 * 8


def test_a_version_written_before_the_gate_loads_as_a_delta_model():
    config = ModelConfig.from_dict({"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64})
    assert config.value_head == "delta"
    assert not hasattr(MultiTrackTransformer(config), "move_head")


def _zero_heads(model):
    with torch.no_grad():
        for head in (model.active_head, model.asset_head, model.value_head, model.move_head):
            head.weight.zero_()
            head.bias.zero_()
    return model


def test_with_the_prior_the_model_starts_as_the_baselines():
    """Heads that say nothing leave the hazard table's on/off chances, the fair copy's asset
    chances and values: the current value of a track on, its usual value when it comes on."""
    from xmlai_assets.model.data import Batch
    from xmlai_assets.model.evaluate import Priors, hazard
    from xmlai_assets_tests.model.test_objective import window

    # V1 on at x 0.5 for 4 steps, off for 2, on again; V2 on with x 1.5 from step 3
    steps = [{0: (1, 3, 0.0, 0.5)}] * 4 + [{}] * 2 + [{0: (1, 3, 0.0, 0.5)}] * 2
    steps = [{**s, **({1: (1, 2, 0.0, 1.5)} if t >= 3 else {})} for t, s in enumerate(steps)]
    batch = Batch(window(steps), torch.ones(1, len(steps), dtype=torch.bool))
    priors = Priors.from_training([batch])
    # V1's x never moves from where it starts (its current value, or its usual 0.5)
    # (add-one smoothed: one onset, four steps on to on)
    assert priors.move_chance[0, :, 1].tolist() == pytest.approx([1 / 3, 1 / 6])
    model = _zero_heads(
        MultiTrackTransformer(ModelConfig(**{**GATED.as_dict(), "prior": "baselines"}))
    )
    model.set_prior(
        priors.hazard, priors.track_asset_stay, priors.asset_freq, priors.value_mean,
        priors.move_chance,
    )  # fmt: skip
    out = model.eval()(batch.sequences, batch.masks)
    base = hazard(priors)(batch)
    torch.testing.assert_close(out["active"].log_softmax(-1), base["active"], atol=1e-5, rtol=0)
    torch.testing.assert_close(out["asset"].log_softmax(-1), base["asset"], atol=1e-5, rtol=0)
    # exactly: V1 holds 0.5 while on and comes back on at its usual 0.5; V2 holds 1.5
    assert out["x"][0, :, 0].tolist() == [0.5] * 8
    assert out["x"][0, 3:, 1].tolist() == [1.5] * 5
    # a hold at the start costs nothing
    from xmlai_assets.model.loss import element_losses, next_step_targets

    losses = element_losses(out, next_step_targets(batch.sequences, batch.masks))
    loss, weight = losses["x"]
    assert weight.sum() > 0 and (loss * weight).sum().item() == 0.0


def test_a_version_written_before_the_prior_loads_without_it():
    config = ModelConfig.from_dict(
        {"d_model": 32, "n_heads": 4, "n_layers": 2, "value_head": "gated"}
    )
    assert config.prior == "none"
    assert "flip_chance" not in MultiTrackTransformer(config).state_dict()
