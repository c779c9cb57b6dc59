"""Hold out whole timelines for validation, so no timeline's rows sit on both sides."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from xmlai_assets.atomic import atomic_path
from xmlai_assets.features.frames import DataFileError, iter_batches, read_columns
from xmlai_assets.timeline.tables import csv_writer


@dataclass(frozen=True)
class VideoSplit:
    """Video ids on each side of the split, each list sorted."""

    train: list[str]
    val: list[str]
    val_fraction: float
    seed: int


def val_count(n_videos: int, val_fraction: float) -> int:
    """How many of `n_videos` the split holds out: the fraction rounded half up, at least one
    and never all of them (110 videos at 0.2 → 22)."""
    return min(max(math.floor(n_videos * val_fraction + 0.5), 1), n_videos - 1)


def split_videos(video_ids: Iterable[str], val_fraction: float = 0.2, seed: int = 0) -> VideoSplit:
    """Split distinct video ids into train and validation.

    Videos are ranked by a hash of (seed, id) and the first `val_count` are held out. The result
    depends on the set of ids only, not their order, and adding a video moves at most the few
    videos at the rank boundary instead of reshuffling everything.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    ids = sorted(set(video_ids))
    if len(ids) < 2:
        raise ValueError(f"a split needs at least 2 videos, got {len(ids)}")
    ranked = sorted(ids, key=lambda v: hashlib.sha256(f"{seed}\0{v}".encode()).digest())
    n_val = val_count(len(ids), val_fraction)
    return VideoSplit(
        train=sorted(ranked[n_val:]),
        val=sorted(ranked[:n_val]),
        val_fraction=val_fraction,
        seed=seed,
    )


def read_video_ids(path: str | os.PathLike[str]) -> Counter[str]:
    """Rows per video id of a master or split CSV."""
    column = read_columns(path, ["video_id"]).column("video_id")
    counts = pc.value_counts(column)
    return Counter(
        dict(
            zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True)
        )
    )


def write_split_csvs(
    master: str | os.PathLike[str],
    split: VideoSplit,
    train_path: str | os.PathLike[str],
    val_path: str | os.PathLike[str],
) -> None:
    """Copy the master's rows into the train and validation CSVs, streaming in bounded memory.

    Rows keep their order and their text (numbers are written back exactly as read). Both files
    are written atomically.
    """
    val_ids = pa.array(split.val, pa.string())
    known = pa.array(split.train + split.val, pa.string())
    with (
        atomic_path(train_path) as train_tmp,
        atomic_path(val_path) as val_tmp,
        open(train_tmp, "wb") as train_fh,
        open(val_tmp, "wb") as val_fh,
    ):
        writers = None
        for batch in iter_batches(master):
            if writers is None:
                writers = (csv_writer(train_fh, batch.schema), csv_writer(val_fh, batch.schema))
            ids = batch.column("video_id")
            if not pc.all(pc.is_in(ids, value_set=known)).as_py():
                raise DataFileError(master, "holds videos that are not in the split")
            is_val = pc.is_in(ids, value_set=val_ids)
            writers[0].write_batch(batch.filter(pc.invert(is_val)))
            writers[1].write_batch(batch.filter(is_val))
        if writers is None:
            raise DataFileError(master, "has no rows")
        for writer in writers:
            writer.close()
