"""Data parallel training's step, as the training loop takes it: each of two ranks (gloo, on
the CPU) runs the forward pass on its share of a batch only; with the counts summed over the
ranks and DistributedDataParallel averaging the gradients of `ranks x` each share's loss, the
step's loss and gradient are the whole batch's in one process, a short last batch (one window,
so one rank has none) included."""

import pytest
import torch
import torch.multiprocessing as mp

from xmlai_assets.model.config import TrainConfig
from xmlai_assets.model.data import BatchIterator
from xmlai_assets.model.train import _Run
from xmlai_assets_tests.model.windows_factory import random_windows

# no dropout: its masks are drawn per process, so no two layouts of a batch share them
SETTINGS = TrainConfig(
    d_model=16, n_heads=2, n_layers=1, d_ff=32, dropout=0.0, value_head="gated", batch_size=8
)


def step(rows: int):
    """A training run's state and its first batch of `rows` windows."""
    data = random_windows(8, 24, seed=1)
    run = _Run(SETTINGS, torch.device("cpu"), data, data, False, lambda line: None)
    batch = next(iter(BatchIterator(data, rows, shuffle=False)))
    seen = []
    run.model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    loss = run.loss(batch)
    whole = run.batch_loss(loss)
    (loss * run.ranks).backward()
    grads = [p.grad.numpy().copy() for p in run.model.parameters()]
    return float(whole), grads, seen


def _rank(rank: int, init: str, rows: int, out) -> None:
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    out.put((rank, step(rows)))
    torch.distributed.destroy_process_group()


@pytest.mark.parametrize("rows", [8, 1])
def test_two_ranks_take_the_loss_and_gradient_of_the_whole_batch(rows, tmp_path):
    loss, grads, seen = step(rows)
    assert seen == [rows]
    context = mp.get_context("spawn")
    out = context.Queue()
    init = f"file://{tmp_path / 'rendezvous'}"
    ranks = [context.Process(target=_rank, args=(r, init, rows, out)) for r in (0, 1)]
    for process in ranks:
        process.start()
    found = dict(out.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(60)
    for rank, (rank_loss, rank_grads, rank_seen) in found.items():
        assert rank_seen == [max(1, len(range(rank, rows, 2)))]  # its share (or a stand-in)
        assert rank_loss == pytest.approx(loss, rel=1e-6)
        for want, got in zip(grads, rank_grads, strict=True):
            assert torch.allclose(torch.from_numpy(want), torch.from_numpy(got), 1e-4, 1e-6)
