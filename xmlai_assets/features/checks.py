"""Data checks that gate training: each returns the problems found, in words; none means pass."""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from xmlai_assets.features.frames import DataFileError, iter_batches, read_columns
from xmlai_assets.features.split import VideoSplit, split_videos
from xmlai_assets.features.windows import (
    N_FEATURES,
    Sequences,
    channel,
    first_targets,
    window_starts,
)
from xmlai_assets.timeline.schema import (
    N_TRACKS,
    PARAM_RANGES,
    TRACK_COLUMNS,
    TRACK_PARAMS,
    track_column,
)

INTEGER_PARAMS = ("active", "asset")
PARAM_OF_COLUMN = {track_column(n, p): p for n in range(1, N_TRACKS + 1) for p in TRACK_PARAMS}
MAX_EXAMPLES = 20


class _Problems:
    """Problems per kind, each with a count and the first example (line numbers count the
    header as line 1)."""

    def __init__(self) -> None:
        self.found: dict[str, list] = {}

    def add(self, kind: str, count: int, example: str) -> None:
        entry = self.found.setdefault(kind, [0, example])
        entry[0] += count

    def lines(self) -> list[str]:
        out = [f"{kind}: {n} rows, first: {example}" for kind, (n, example) in self.found.items()]
        if len(out) > MAX_EXAMPLES:
            out = [*out[:MAX_EXAMPLES], f"... and {len(out) - MAX_EXAMPLES} more kinds"]
        return out


def master_problems(path: str | os.PathLike[str]) -> list[str]:
    """Check a master (or split) CSV: the documented columns, finite values in range, integer
    classes, time strictly increasing within each video, at least one video."""
    try:
        ids_and_time = read_columns(path, ["video_id", "time"])
    except DataFileError as exc:
        return [exc.reason]
    if ids_and_time.num_rows == 0:
        return ["no videos: the table has no rows"]
    problems = _Problems()
    _check_time(ids_and_time, problems)
    del ids_and_time
    line = 2
    try:
        for batch in iter_batches(path):
            _check_values(batch, line, problems)
            line += batch.num_rows
    except DataFileError as exc:
        return [exc.reason]
    return problems.lines()


def _check_time(table: pa.Table, problems: _Problems) -> None:
    time = table.column("time").to_numpy(zero_copy_only=False)
    bad = ~np.isfinite(time)
    if bad.any():
        problems.add("time: missing or not finite", int(bad.sum()), f"line {np.argmax(bad) + 2}")
        return
    encoded = table.column("video_id").combine_chunks().dictionary_encode()
    codes = encoded.indices.to_numpy()
    names = encoded.dictionary.to_pylist()
    order = np.argsort(codes, kind="stable")
    same_video = codes[order][1:] == codes[order][:-1]
    not_after = np.diff(time[order]) <= 0
    bad = np.flatnonzero(same_video & not_after)
    if bad.size:
        row = order[bad[0] + 1]
        problems.add(
            "time not strictly increasing within a video",
            int(bad.size),
            f"line {row + 2} (video {names[codes[row]]!r}: {time[row]} after "
            f"{time[order[bad[0]]]})",
        )


def _check_values(batch: pa.RecordBatch, first_line: int, problems: _Problems) -> None:
    for name in TRACK_COLUMNS:
        param = PARAM_OF_COLUMN[name]
        column = batch.column(name)
        values = column.to_numpy(zero_copy_only=False)
        finite = np.isfinite(values)
        if column.null_count or not finite.all():
            i = int(np.argmax(~finite))
            problems.add(
                f"{name}: missing or not finite", int((~finite).sum()), _at(batch, i, first_line)
            )
            values = np.where(finite, values, 0.0)
        lo, hi = PARAM_RANGES[param]
        out = (values < lo) | (values > hi)
        if out.any():
            i = int(np.argmax(out))
            problems.add(
                f"{name}: outside {lo:g}..{hi:g}",
                int(out.sum()),
                f"{values[i]} at {_at(batch, i, first_line)}",
            )
        if param in INTEGER_PARAMS:
            fractional = values != np.round(values)
            if fractional.any():
                i = int(np.argmax(fractional))
                problems.add(
                    f"{name}: not a whole number",
                    int(fractional.sum()),
                    f"{values[i]} at {_at(batch, i, first_line)}",
                )


def _at(batch: pa.RecordBatch, i: int, first_line: int) -> str:
    return f"line {first_line + i} (video {batch.column('video_id')[i].as_py()!r})"


def sequence_problems(
    seq: Sequences, rows_per_video: Mapping[str, int], window: int, stride: int
) -> list[str]:
    """Check one split's windows against the rows of its CSV: shapes and types; every video
    cut into the windows the stride predicts, in order; masks that mark exactly the padding;
    padded steps all zero; finite values; classes in range on real steps."""
    n = len(seq.masks)
    expected_shapes = {
        "sequences": ((n, window, N_FEATURES), np.float32),
        "masks": ((n, window), np.bool_),
        "video_ids": ((n,), None),
        "start_times": ((n,), np.float64),
        "first_targets": ((n,), np.int16),
        "step_seconds": ((n,), np.float64),
    }
    problems = []
    for name, (shape, dtype) in expected_shapes.items():
        array = getattr(seq, name)
        if array.shape != shape:
            problems.append(f"{name}: shape {array.shape}, expected {shape}")
        elif dtype is not None and array.dtype != dtype:
            problems.append(f"{name}: dtype {array.dtype}, expected {np.dtype(dtype)}")
    if problems:
        return problems

    videos = sorted(rows_per_video)
    lengths = np.array([rows_per_video[v] for v in videos], dtype=np.int64)
    video, start = window_starts(lengths, window, stride)
    expected_ids = np.array(videos, dtype=str)[video] if videos else np.array([], dtype=str)
    # Windows come grouped per video in the order of the CSV; compare per video, in order.
    order = np.argsort(seq.video_ids, kind="stable")
    if len(order) != len(video) or not np.array_equal(seq.video_ids[order], expected_ids):
        got = dict(zip(*np.unique(seq.video_ids, return_counts=True), strict=True))
        want = dict(zip(*np.unique(expected_ids, return_counts=True), strict=True))
        diff = {str(v): (int(got.get(v, 0)), int(want.get(v, 0))) for v in got.keys() | want.keys()}
        diff = {v: c for v, c in diff.items() if c[0] != c[1]}
        problems.append(f"windows per video (found, expected) differ: {dict(sorted(diff.items()))}")
        return problems
    valid = np.minimum(window, lengths[video] - start)
    expected_masks = np.arange(window) < valid[:, None]
    wrong = np.flatnonzero((seq.masks[order] != expected_masks).any(axis=1))
    if wrong.size:
        i = order[wrong[0]]
        problems.append(
            f"masks: {wrong.size} windows do not mark exactly their padding "
            f"(first: window {i} of {seq.video_ids[i]!r}, {int(seq.masks[i].sum())} real steps, "
            f"expected {int(valid[wrong[0]])})"
        )
    want_first = first_targets(start, window, stride)
    if not np.array_equal(seq.first_targets[order], want_first):
        problems.append("first_targets: not where the overlap with the window before ends")
    steps = seq.step_seconds[order]
    one_step = lengths[video] == 1
    if not (
        np.isfinite(steps).all() and (steps[~one_step] > 0).all() and (steps[one_step] == 0).all()
    ):
        problems.append("step_seconds: not a positive step (0 for a one-step timeline)")
    start_rank = np.lexsort((seq.start_times[order], seq.video_ids[order]))
    if not np.array_equal(start_rank, np.arange(len(order))):
        problems.append("windows of a video are not in time order")
    padded = seq.sequences[~seq.masks]
    if padded.size and np.any(padded != 0):
        n_bad = int((padded != 0).any(axis=1).sum())
        problems.append(f"padding: {n_bad} padded steps not all zero")
    del padded
    finite = np.isfinite(seq.sequences)
    if not finite.all():
        problems.append(f"values: {int((~finite).sum())} not finite")
    del finite
    for param in INTEGER_PARAMS:
        values = channel(seq, param)
        lo, hi = PARAM_RANGES[param]
        bad = (values < lo) | (values > hi) | (values != np.round(values))
        if bad.any():
            problems.append(f"{param}: {int(bad.sum())} values not whole numbers in {lo}..{hi}")
    return problems


def split_problems(
    sides: Mapping[str, Sequences], val_fraction: float, test_fraction: float, seed: int
) -> list[str]:
    """Check that no video is on two sides and that the held-out videos are the ones the
    configured fractions and seed choose. `sides`: the sequences of each split by name."""
    ids = {name: set(seq.video_ids.tolist()) for name, seq in sides.items()}
    problems = []
    for a, b in itertools.combinations(sorted(ids), 2):
        both = sorted(ids[a] & ids[b])
        if both:
            problems.append(f"{len(both)} videos in both {a} and {b}: {both[:MAX_EXAMPLES]}")
    if problems:
        return problems
    everyone = set().union(*ids.values())
    if len(everyone) < 2:
        return [f"{len(everyone)} videos across the splits; a split needs at least 2"]
    expected: VideoSplit = split_videos(everyone, val_fraction, test_fraction, seed)
    for name, chosen in expected.by_name().items():
        if name == "train":
            continue
        if len(ids[name]) != len(chosen):
            problems.append(
                f"{len(ids[name])} of {len(everyone)} videos held out for {name}; the "
                f"configured fractions hold out {len(chosen)}"
            )
        elif sorted(ids[name]) != chosen:
            problems.append(f"the {name} videos are not the ones seed {seed} chooses")
    return problems
