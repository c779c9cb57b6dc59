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
from xmlai_assets.features.split import VideoSplit, read_video_ids, split_videos, write_split_csvs
from xmlai_assets.features.windows import cut_windows, sequence_stats, write_npz
from xmlai_assets.paths import DataLayout
from xmlai_assets.timeline.tables import file_sha256

SPLITS = ("train", "val")
# Bump when a change here changes the bytes of a split, the scalers or the sequences.
FEATURES_VERSION = "2"


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


def split_master(layout: DataLayout, val_fraction: float = 0.2, seed: int = 0) -> SplitSummary:
    """master_training_data.csv → train_data.csv and val_data.csv, split by video."""
    rows = read_video_ids(layout.master_csv)
    split = split_videos(rows, val_fraction, seed)
    write_split_csvs(layout.master_csv, split, layout.train_csv, layout.val_csv)
    per_split = {"train": split.train, "val": split.val}
    rows_per_video = {name: {v: rows[v] for v in ids} for name, ids in per_split.items()}
    return SplitSummary(
        split=split,
        rows={name: sum(counts.values()) for name, counts in rows_per_video.items()},
        rows_per_video=rows_per_video,
        files={"train": FileInfo.of(layout.train_csv), "val": FileInfo.of(layout.val_csv)},
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
    """train/val CSVs and the scalers → train_sequences.npz and val_sequences.npz."""
    scalers = load_scalers(layout.scalers_json)
    csv = {"train": layout.train_csv, "val": layout.val_csv}
    npz = {"train": layout.train_sequences, "val": layout.val_sequences}
    summaries = {}
    for split in SPLITS:
        frames = load_track_frames(csv[split], np.float32)
        encoded = normalize(frames.values, scalers, copy=False)
        seq = cut_windows(frames, encoded, window, stride)
        del frames, encoded
        write_npz(seq, npz[split])
        summaries[split] = SequenceSummary(
            shapes={name: list(array.shape) for name, array in seq.arrays().items()},
            stats=sequence_stats(seq),
            file=FileInfo.of(npz[split]),
            nbytes=seq.nbytes,
            video_ids=sorted(set(seq.video_ids.tolist())),
        )
    return summaries


def preprocess(
    layout: DataLayout,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    scaler: ScalerKind = "standard",
    window: int = 100,
    stride: int = 80,
) -> tuple[SplitSummary, ScalerSummary, dict[str, SequenceSummary]]:
    """All three steps in order, without Dagster."""
    split = split_master(layout, val_fraction, seed)
    scalers = fit_train_scalers(layout, scaler)
    return split, scalers, build_sequences(layout, window, stride)
