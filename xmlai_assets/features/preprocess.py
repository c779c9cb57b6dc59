"""The preprocessing steps over the artifact store: master CSV → split → scalers → sequences.

Each step reads its inputs from the store, writes its artifacts whole and returns a summary for
logs and metadata. The Dagster assets call these, and so can a plain script.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from xmlai_assets.artifacts import ArtifactStore
from xmlai_assets.features.frames import load_track_frames
from xmlai_assets.features.scalers import (
    ScalerKind,
    describe_scalers,
    fit_scalers,
    load_scalers,
    normalize,
    read_active_entries,
    scalers_files,
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
from xmlai_assets.paths import (
    MASTER_CSV,
    SCALERS_JSON,
    SCALERS_PKL,
    DataLayout,
    sequences_npz,
    split_csv,
)
from xmlai_assets.timeline.tables import file_sha256

# Bump when a change here changes the bytes of a split, the scalers or the sequences.
FEATURES_VERSION = "5"


@dataclass(frozen=True)
class FileInfo:
    """An artifact as written: where it is (a path or a URL), its size and content hash."""

    location: str
    size_bytes: int
    sha256: str

    @classmethod
    def written(cls, store: ArtifactStore, name: str, local: str | os.PathLike[str]) -> FileInfo:
        """`name` in `store`, described from `local`, the file that was uploaded as it."""
        return cls(store.location(name), os.stat(local).st_size, file_sha256(local))

    @classmethod
    def of_bytes(cls, store: ArtifactStore, name: str, data: bytes) -> FileInfo:
        return cls(store.location(name), len(data), hashlib.sha256(data).hexdigest())


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
    store = layout.artifacts
    with store.reading(MASTER_CSV) as master, ExitStack() as stack:
        rows = read_video_ids(master)
        split = split_videos(rows, val_fraction, test_fraction, seed)
        # every split file is committed only when all three are complete
        tmps = {name: stack.enter_context(store.writing(split_csv(name))) for name in SPLITS}
        write_split_csvs(master, split, tmps)
        files = {name: FileInfo.written(store, split_csv(name), tmps[name]) for name in SPLITS}
    rows_per_video = {name: {v: rows[v] for v in ids} for name, ids in split.by_name().items()}
    return SplitSummary(
        split=split,
        rows={name: sum(counts.values()) for name, counts in rows_per_video.items()},
        rows_per_video=rows_per_video,
        files=files,
    )


def fit_train_scalers(layout: DataLayout, kind: ScalerKind = "standard") -> ScalerSummary:
    """train_data.csv → scalers.pkl and scalers.json (active entries of the training split)."""
    store = layout.artifacts
    with store.reading(split_csv("train")) as train:
        entries, rows, videos = read_active_entries(train)
    scalers = fit_scalers(entries, kind)
    stats = describe_scalers(scalers, entries)
    fitted_on = {"split": "train", "rows": rows, "videos": videos}
    pickled, text = scalers_files(
        scalers, SCALERS_PKL, {"kind": kind, "fitted_on": fitted_on, "params": stats}
    )
    store.write_bytes(SCALERS_PKL, pickled)
    store.write_bytes(SCALERS_JSON, text)
    return ScalerSummary(
        kind=kind,
        stats=stats,
        rows=fitted_on["rows"],
        videos=fitted_on["videos"],
        pickle=FileInfo.of_bytes(store, SCALERS_PKL, pickled),
        json=FileInfo.of_bytes(store, SCALERS_JSON, text),
    )


def build_sequences(
    layout: DataLayout, window: int = 100, stride: int = 80
) -> dict[str, SequenceSummary]:
    """Each split's CSV and the scalers → its sequences file (train_sequences.npz, ...)."""
    store = layout.artifacts
    scalers = load_scalers(store.read_bytes(SCALERS_JSON), store.location(SCALERS_JSON))
    summaries = {}
    for split in SPLITS:
        with store.reading(split_csv(split)) as csv:
            frames = load_track_frames(csv, np.float32)
        encoded = normalize(frames.values, scalers, copy=False)
        seq = cut_windows(frames, encoded, window, stride)
        del frames, encoded
        with store.writing(sequences_npz(split)) as tmp:
            write_npz(seq, tmp)
            file = FileInfo.written(store, sequences_npz(split), tmp)
        summaries[split] = SequenceSummary(
            shapes={name: list(array.shape) for name, array in seq.arrays().items()},
            stats=sequence_stats(seq),
            file=file,
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
