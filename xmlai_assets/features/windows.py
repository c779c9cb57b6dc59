"""Fixed-length training windows cut per timeline, padded at the end, with a mask."""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass

import numpy as np

from xmlai_assets.features.frames import DataFileError, TrackFrames
from xmlai_assets.timeline.schema import N_TRACKS, TRACK_PARAMS

N_FEATURES = N_TRACKS * len(TRACK_PARAMS)
ARRAYS = ("sequences", "masks", "video_ids", "start_times", "first_targets", "step_seconds")
# Zip members carry a fixed date, so the same arrays give the same bytes on every run.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def check_window(window: int, stride: int) -> None:
    if window < 1 or not 1 <= stride <= window:
        raise ValueError(
            f"need window >= 1 and 1 <= stride <= window (no step skipped), "
            f"got window={window}, stride={stride}"
        )


def window_starts(lengths: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(video index, first step) of every window over timelines of `lengths` steps.

    Windows start every `stride` steps; a timeline gets windows until one reaches its end, so
    every step is covered and no window lies wholly inside the one before it. A timeline no
    longer than one window gets one window.
    """
    check_window(window, stride)
    lengths = np.asarray(lengths, dtype=np.int64)
    overlap = window - stride
    counts = np.maximum(1, -(-(lengths - overlap) // stride))
    video = np.repeat(np.arange(len(lengths)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    start = (np.arange(counts.sum()) - first) * stride
    return video, start


@dataclass
class Sequences:
    """Windows of one split: the four arrays of the `.npz` file."""

    sequences: np.ndarray  # float32 [N, window, 180]: V1 active, asset, scale, ..., V20 crop_b
    masks: np.ndarray  # bool [N, window]: True on real steps, False on padding
    video_ids: np.ndarray  # str [N]
    start_times: np.ndarray  # float64 [N]: timeline time of each window's first step, seconds
    # int16 [N]: the first step whose next step is scored in this window: 0 in a video's first
    # window; in a later one, past the targets the window before it scored (overlap), so a
    # step is scored once
    first_targets: np.ndarray
    # float64 [N]: seconds from one step to the next in the window's timeline (its sample
    # rate's period; 0 for a timeline of one step, which has none)
    step_seconds: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAYS}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays().values())


def cut_windows(frames: TrackFrames, encoded: np.ndarray, window: int, stride: int) -> Sequences:
    """Cut `encoded[row, track, param]` (rows as in `frames`) into padded windows per video."""
    video, start = window_starts(frames.lengths, window, stride)
    steps = start[:, None] + np.arange(window)
    lengths = frames.lengths[video][:, None]
    masks = steps < lengths
    rows = frames.offsets[video][:, None] + np.minimum(steps, lengths - 1)
    flat = encoded.reshape(len(encoded), N_FEATURES)
    if len(flat) == 0:
        sequences = np.zeros((0, window, N_FEATURES), dtype=np.float32)
    else:
        sequences = flat[rows]
        sequences[~masks] = 0.0
    ids = np.array(frames.video_ids, dtype=str) if frames.video_ids else np.array([], dtype="<U1")
    return Sequences(
        sequences=sequences.astype(np.float32, copy=False),
        masks=masks,
        video_ids=ids[video],
        start_times=frames.time[frames.offsets[video] + start] if len(frames.time) else np.zeros(0),
        first_targets=first_targets(start, window, stride),
        step_seconds=step_seconds(frames)[video],
    )


def step_seconds(frames: TrackFrames) -> np.ndarray:
    """Per video of `frames`: the time from its first step to its second (0 with one step)."""
    steps = np.zeros(len(frames.lengths), dtype=np.float64)
    more = frames.lengths > 1
    if len(frames.time):
        first = frames.offsets[more]
        steps[more] = frames.time[first + 1] - frames.time[first]
    return steps


def first_targets(start: np.ndarray, window: int, stride: int) -> np.ndarray:
    """Per window (its first step's index in the video): where its unscored targets begin."""
    overlap = max(0, window - stride - 1)
    return np.where(start == 0, 0, overlap).astype(np.int16)


def write_npz(sequences: Sequences, path: str | os.PathLike[str]) -> None:
    """Write the arrays as an uncompressed `.npz` (np.load reads it), with the same bytes for the
    same arrays."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, array in sequences.arrays().items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


def read_npz(path: str | os.PathLike[str], names: tuple[str, ...] = ARRAYS) -> Sequences:
    """Read a sequences file (no pickled objects are ever loaded); arrays not in `names` are
    left unread and empty."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [name for name in names if name not in data.files]
            if missing:
                raise DataFileError(path, f"missing arrays {missing}")
            return Sequences(**{n: data[n] if n in names else np.empty(0) for n in ARRAYS})
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataFileError):
            raise
        raise DataFileError(path, f"not a readable sequences file ({exc})") from exc


def channel(seq: Sequences, param: str) -> np.ndarray:
    """One parameter of all 20 tracks on the real steps: [real steps, 20] (a small copy)."""
    return seq.sequences[:, :, TRACK_PARAMS.index(param) :: len(TRACK_PARAMS)][seq.masks]


def sequence_stats(seq: Sequences) -> dict:
    """Counts a reader of the metadata wants: windows, valid-step ratio, class histograms."""
    active = channel(seq, "active")
    asset = channel(seq, "asset")[active == 1].astype(np.int64)
    active = active.astype(np.int64).ravel()
    return {
        "windows": int(len(seq.masks)),
        "videos": int(len(np.unique(seq.video_ids))),
        "real_steps": int(seq.masks.sum()),
        "valid_step_ratio": float(seq.masks.mean()) if seq.masks.size else 0.0,
        "active_histogram": {
            str(k): int(v) for k, v in enumerate(np.bincount(active, minlength=2))
        },
        "asset_histogram": {str(k): int(v) for k, v in enumerate(np.bincount(asset, minlength=10))},
    }
