"""Training windows as tensors: a Dataset over the `.npz` files and a cheap in-memory loader."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from xmlai_assets.features.windows import read_npz
from xmlai_assets.timeline.schema import N_TRACKS, TRACK_PARAMS

N_PARAMS = len(TRACK_PARAMS)


@dataclass
class Batch:
    """Windows of one batch: `sequences` float [B, T, 180], `masks` bool [B, T] (True = real),
    and `first_targets` long [B] (evaluation scores the targets of steps from there on; None:
    all)."""

    sequences: torch.Tensor
    masks: torch.Tensor
    first_targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        first = None if self.first_targets is None else self.first_targets.to(device)
        return Batch(self.sequences.to(device), self.masks.to(device), first)


class MultiTrackDataset(Dataset):
    """The windows of one sequences file; item i is (sequence [T, 180], mask [T])."""

    def __init__(
        self,
        sequences: np.ndarray | torch.Tensor,
        masks: np.ndarray | torch.Tensor,
        first_targets: np.ndarray | torch.Tensor | None = None,
        step_seconds: float = 0.0,
    ):
        self.step_seconds = step_seconds  # between two steps; 0: not known
        self.sequences = torch.as_tensor(sequences, dtype=torch.float32)
        self.masks = torch.as_tensor(masks, dtype=torch.bool)
        if first_targets is None:
            first_targets = torch.zeros(len(self.masks), dtype=torch.long)
        self.first_targets = torch.as_tensor(first_targets, dtype=torch.long).to(
            self.sequences.device
        )
        if self.sequences.ndim != 3 or self.sequences.shape[2] != N_TRACKS * N_PARAMS:
            raise ValueError(f"sequences of shape {tuple(self.sequences.shape)}: want [N, T, 180]")
        if self.masks.shape != self.sequences.shape[:2]:
            raise ValueError(
                f"masks of shape {tuple(self.masks.shape)} do not match sequences "
                f"{tuple(self.sequences.shape)}"
            )

    @classmethod
    def from_npz(cls, path: str | os.PathLike[str]) -> MultiTrackDataset:
        seq = read_npz(path, names=("sequences", "masks", "first_targets", "step_seconds"))
        steps = seq.step_seconds[seq.step_seconds > 0]
        step = float(np.median(steps)) if len(steps) else 0.0
        return cls(seq.sequences, seq.masks, seq.first_targets, step)

    @property
    def steps_per_second(self) -> int:
        """Steps in one second of the timelines (the median over windows); 0: not known."""
        return round(1 / self.step_seconds) if self.step_seconds > 0 else 0

    def __len__(self) -> int:
        return len(self.masks)

    def to(self, device: torch.device | str) -> MultiTrackDataset:
        """The same windows on `device` (batches are then cut there)."""
        return MultiTrackDataset(
            self.sequences.to(device), self.masks.to(device), self.first_targets, self.step_seconds
        )

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.sequences[i], self.masks[i]


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> Batch:
    """Stack items into a Batch; windows shorter than the longest are padded and masked."""
    length = max(len(mask) for _, mask in items)
    sequences = torch.zeros(len(items), length, items[0][0].shape[-1])
    masks = torch.zeros(len(items), length, dtype=torch.bool)
    for i, (seq, mask) in enumerate(items):
        sequences[i, : len(seq)] = seq
        masks[i, : len(mask)] = mask
    return Batch(sequences, masks)


class BatchIterator:
    """Shuffled batches sliced from pre-stacked tensors: far cheaper than per-item loading with
    worker processes for a dataset that fits in memory. The shuffle follows `generator`, whose
    state a checkpoint saves."""

    def __init__(
        self,
        dataset: MultiTrackDataset,
        batch_size: int,
        *,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.generator = generator
        # full batches only (the rest of the shuffle waits for the next epoch's), unless the
        # windows are fewer than one batch
        self.drop_last = drop_last and len(dataset) >= batch_size

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self) -> Iterator[Batch]:
        n = len(self.dataset)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.dataset.sequences.device)  # index where the windows live
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = order[start : start + self.batch_size]
            yield Batch(
                self.dataset.sequences[index],
                self.dataset.masks[index],
                self.dataset.first_targets[index],
            )
