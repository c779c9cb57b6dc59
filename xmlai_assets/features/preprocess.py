"""The preprocessing steps over a data folder: master CSV → split → scalers → sequences.

Each step reads its inputs from the folder, writes its artifacts atomically and returns a
summary for logs and metadata. The Dagster assets call these, and so can a plain script.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmlai_assets.features.frames import load_track_frames
from xmlai_assets.features.scalers import (
    ScalerKind,
    describe_scalers,
    fit_scalers,
    load_scalers,
    normalize,
    read_active_entries,
    save_scalers,
)
from xmlai_assets.features.split import (
    DEFAULT_TEST_FRACTION,
    DEFAULT_VAL_FRACTION,
    SPLITS,
    VideoSplit,
    read_video_ids,
    split_videos,
    write_split_csvs,
)
from xmlai_assets.features.windows import cut_windows, sequence_stats, write_npz
from xmlai_assets.paths import DataLayout
from xmlai_assets.timeline.tables import file_sha256

# Bump when a change here changes the bytes of a split, the scalers or the sequences.
FEATURES_VERSION = "4"


@dataclass(frozen=True)
class FileInfo:
    path: Path
    size_bytes: int
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileInfo:
        path = Path(path)
        return cls(path, path.stat().st_size, file_sha256(path))


@dataclass
class SplitSummary:
    split: VideoSplit
    rows: dict[str, int]
    rows_per_video: dict[str, dict[str, int]]
    files: dict[str, FileInfo]


@dataclass
class ScalerSummary:
    kind: str
    stats: dict[str, dict[str, float]]
    rows: int
    videos: int
    pickle: FileInfo
    json: FileInfo


@dataclass
class SequenceSummary:
    shapes: dict[str, list[int]]
    stats: dict
    file: FileInfo
    nbytes: int
    video_ids: list[str]


def split_master(
    layout: DataLayout,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
) -> SplitSummary:
    """master_training_data.csv → train_data.csv, val_data.csv and test_data.csv, by video."""
    rows = read_video_ids(layout.master_csv)
    split = split_videos(rows, val_fraction, test_fraction, seed)
    write_split_csvs(layout.master_csv, split, {name: layout.split_csv(name) for name in SPLITS})
    rows_per_video = {name: {v: rows[v] for v in ids} for name, ids in split.by_name().items()}
    return SplitSummary(
        split=split,
        rows={name: sum(counts.values()) for name, counts in rows_per_video.items()},
        rows_per_video=rows_per_video,
        files={name: FileInfo.of(layout.split_csv(name)) for name in SPLITS},
    )


def fit_train_scalers(layout: DataLayout, kind: ScalerKind = "standard") -> ScalerSummary:
    """train_data.csv → scalers.pkl and scalers.json (active entries of the training split)."""
    entries, rows, videos = read_active_entries(layout.train_csv)
    scalers = fit_scalers(entries, kind)
    stats = describe_scalers(scalers, entries)
    fitted_on = {"split": "train", "rows": rows, "videos": videos}
    save_scalers(
        scalers,
        layout.scalers_pkl,
        layout.scalers_json,
        {"kind": kind, "fitted_on": fitted_on, "params": stats},
    )
    return ScalerSummary(
        kind=kind,
        stats=stats,
        rows=fitted_on["rows"],
        videos=fitted_on["videos"],
        pickle=FileInfo.of(layout.scalers_pkl),
        json=FileInfo.of(layout.scalers_json),
    )


def build_sequences(
    layout: DataLayout, window: int = 100, stride: int = 80
) -> dict[str, SequenceSummary]:
    """Each split's CSV and the scalers → its sequences file (train_sequences.npz, ...)."""
    scalers = load_scalers(layout.scalers_json)
    summaries = {}
    for split in SPLITS:
        npz = layout.sequences_file(split)
        frames = load_track_frames(layout.split_csv(split), np.float32)
        encoded = normalize(frames.values, scalers, copy=False)
        seq = cut_windows(frames, encoded, window, stride)
        del frames, encoded
        write_npz(seq, npz)
        summaries[split] = SequenceSummary(
            shapes={name: list(array.shape) for name, array in seq.arrays().items()},
            stats=sequence_stats(seq),
            file=FileInfo.of(npz),
            nbytes=seq.nbytes,
            video_ids=sorted(set(seq.video_ids.tolist())),
        )
    return summaries


def preprocess(
    layout: DataLayout,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    scaler: ScalerKind = "standard",
    window: int = 100,
    stride: int = 80,
) -> tuple[SplitSummary, ScalerSummary, dict[str, SequenceSummary]]:
    """All three steps in order, without Dagster."""
    split = split_master(layout, val_fraction, test_fraction, seed)
    scalers = fit_train_scalers(layout, scaler)
    return split, scalers, build_sequences(layout, window, stride)
