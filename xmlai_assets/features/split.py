"""Hold out whole timelines for validation and for the test, so no timeline's rows sit on two
sides."""

from __future__ import annotations

import hashlib
import math
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from xmlai_assets.features.frames import DataFileError, iter_batches, read_columns
from xmlai_assets.paths import SPLITS
from xmlai_assets.timeline.tables import csv_writer

DEFAULT_VAL_FRACTION = 0.15
DEFAULT_TEST_FRACTION = 0.15


@dataclass(frozen=True)
class VideoSplit:
    """Video ids on each side of the split, each list sorted."""

    train: list[str]
    val: list[str]
    test: list[str]
    val_fraction: float
    test_fraction: float
    seed: int

    def by_name(self) -> dict[str, list[str]]:
        return {name: getattr(self, name) for name in SPLITS}


def val_count(n_videos: int, val_fraction: float, n_test: int = 0) -> int:
    """How many of `n_videos` are held out for validation: the fraction rounded half up, at
    least one, and never so many that training is left without a video once `n_test` are held
    out for the test (110 videos at 0.15 → 17)."""
    return min(max(math.floor(n_videos * val_fraction + 0.5), 1), n_videos - n_test - 1)


def n_test_videos(n_videos: int, test_fraction: float) -> int:
    """How many of `n_videos` are held out for the test: the fraction rounded half up, at least
    one when the fraction is above 0, and never so many that training or validation is left
    without a video (2 videos: none)."""
    if test_fraction <= 0.0:
        return 0
    return max(min(max(math.floor(n_videos * test_fraction + 0.5), 1), n_videos - 2), 0)


def split_videos(
    video_ids: Iterable[str],
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> VideoSplit:
    """Split distinct video ids into train, validation and test.

    Videos are ranked by a hash of (seed, id): the first `n_test_videos` are the test, the next
    `val_count` of the rest the validation. The result depends on the set of ids only, not their
    order, and adding a video moves at most the few videos at the rank boundaries instead of
    reshuffling everything.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie strictly between 0 and 1, got {val_fraction}")
    if not 0.0 <= test_fraction < 1.0 - val_fraction:
        raise ValueError(
            f"test_fraction must lie in [0, {1.0 - val_fraction:g}) beside val_fraction "
            f"{val_fraction:g}, got {test_fraction}"
        )
    ids = sorted(set(video_ids))
    if len(ids) < 2:
        raise ValueError(f"a split needs at least 2 videos, got {len(ids)}")
    ranked = sorted(ids, key=lambda v: hashlib.sha256(f"{seed}\0{v}".encode()).digest())
    n_test = n_test_videos(len(ids), test_fraction)
    n_val = val_count(len(ids), val_fraction, n_test)
    return VideoSplit(
        train=sorted(ranked[n_test + n_val :]),
        val=sorted(ranked[n_test : n_test + n_val]),
        test=sorted(ranked[:n_test]),
        val_fraction=val_fraction,
        test_fraction=test_fraction,
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
    paths: Mapping[str, str | os.PathLike[str]],
) -> None:
    """Copy the master's rows into one CSV per split (`paths[name]`), streaming in bounded
    memory.

    Rows keep their order and their text (numbers are written back exactly as read); a split
    without videos gets the header alone. The caller makes the files appear whole
    (`ArtifactStore.writing`)."""
    sides = split.by_name()
    known = pa.array([v for ids in sides.values() for v in ids], pa.string())
    members = {name: pa.array(ids, pa.string()) for name, ids in sides.items()}
    with ExitStack() as stack:
        handles = {name: stack.enter_context(open(paths[name], "wb")) for name in SPLITS}
        writers = None
        for batch in iter_batches(master):
            if writers is None:
                writers = {name: csv_writer(handles[name], batch.schema) for name in SPLITS}
            ids = batch.column("video_id")
            if not pc.all(pc.is_in(ids, value_set=known)).as_py():
                raise DataFileError(master, "holds videos that are not in the split")
            for name in SPLITS:
                writers[name].write_batch(batch.filter(pc.is_in(ids, value_set=members[name])))
        if writers is None:
            raise DataFileError(master, "has no rows")
        for writer in writers.values():
            writer.close()
