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
