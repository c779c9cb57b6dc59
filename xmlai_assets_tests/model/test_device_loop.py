"""The loop CUDA runs, checked on the CPU: a training step reads nothing back to the host, the
epoch's validation is the scorecard's loss, compiled runs see one batch shape, checkpoints
come every `checkpoint_minutes`."""

import pytest
import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from xmlai_assets.model.data import BatchIterator
from xmlai_assets.model.evaluate import evaluate, model_predictor, validation_loss
from xmlai_assets.model.loss import training_loss
from xmlai_assets.model.train import TrainConfig, train
from xmlai_assets.model.transformer import MultiTrackTransformer, one_hot
from xmlai_assets_tests.model.test_training import TINY, quiet
from xmlai_assets_tests.model.windows_factory import random_windows

# operations that wait for the device: a tensor's value read by the host
HOST_READS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero"}


def test_a_training_step_reads_nothing_back_to_the_host():
    config = TrainConfig(**TINY)
    model = MultiTrackTransformer(config.architecture()).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    batch = next(iter(BatchIterator(random_windows(4, 12, seed=3), 4, shuffle=False)))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss = training_loss(model(batch.sequences, batch.masks), batch.sequences, batch.masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.found_inf = (~torch.isfinite(loss.detach() + norm)).float()
        optimizer.step()
    # the CPU kernel of fused AdamW reads its step count as a number; the CUDA kernel reads it
    # on the device, so that read is not one a GPU would wait for
    reads = [
        e.name
        for e in prof.events()
        if e.name in HOST_READS and not _within(e, "aten::_fused_adamw_")
    ]
    assert reads == []
    assert any(_within(e, "aten::_fused_adamw_") for e in prof.events())  # the step was seen


def _within(event, name: str) -> bool:
    parent = event.cpu_parent
    while parent is not None:
        if parent.name == name:
            return True
        parent = parent.cpu_parent
    return False


def test_one_hot_is_torchs_one_hot():
    index = torch.randint(0, 10, (3, 5, 20), generator=torch.Generator().manual_seed(0))
    assert torch.equal(one_hot(index, 10, torch.float32), F.one_hot(index, 10).float())


def test_the_epochs_validation_loss_is_the_scorecards_loss():
    windows = random_windows(9, 14, seed=4)
    windows.first_targets[3:] = 5  # overlapping windows: their first targets were scored before
    model = MultiTrackTransformer(TrainConfig(**TINY).architecture()).eval()
    weights = {"active": 2.0, "x": 0.5}
    batches = list(BatchIterator(windows, 4, shuffle=False))
    scorecard = evaluate(model_predictor(model), batches, value_scale={}, weights=weights)
    assert validation_loss(model, batches, weights=weights) == pytest.approx(
        scorecard["loss"], rel=1e-6
    )
    in_one = list(BatchIterator(windows, 256, shuffle=False))
    assert validation_loss(model, in_one, weights=weights) == pytest.approx(
        scorecard["loss"], rel=1e-6
    )


def test_full_batches_only_when_asked_and_the_shuffle_covers_the_rest_later():
    windows = random_windows(10, 6, seed=5)
    dropping = BatchIterator(
        windows, 4, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=True
    )
    assert len(dropping) == 2
    seen = set()
    for _ in range(10):
        shapes = [len(b.masks) for b in dropping]
        assert shapes == [4, 4]
        for b in dropping:
            seen.update(b.sequences[:, 0, :].sum(-1).tolist())
    assert len(seen) == 10  # every window trains in some epoch
    assert [len(b.masks) for b in BatchIterator(windows, 4, shuffle=False)] == [4, 4, 2]
    # fewer windows than one batch: one short batch rather than none
    few = BatchIterator(random_windows(3, 6), 4, shuffle=False, drop_last=True)
    assert [len(b.masks) for b in few] == [3]


@pytest.mark.parametrize("minutes", [0, 60])
def test_checkpoints_come_after_checkpoint_minutes_of_training(tmp_path, minutes):
    data = random_windows(8, 10, seed=1), random_windows(4, 10, seed=2)
    checkpoint = tmp_path / "ckpt.pt"
    written = []
    train(
        *data,
        TrainConfig(**{**TINY, "checkpoint_minutes": minutes}, epochs=3),
        checkpoint=checkpoint,
        log=quiet,
        after_epoch=lambda r: written.append(
            checkpoint.exists() and torch.load(checkpoint)["state"]["epoch"]
        ),
    )
    # 0: after every epoch; an hour: none in a run of seconds
    assert written == ([1, 2, 3] if minutes == 0 else [False, False, False])
