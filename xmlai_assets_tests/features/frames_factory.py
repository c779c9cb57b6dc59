"""Random master tables with the shape of the real one, for property tests."""

import numpy as np
import pandas as pd

from xmlai_assets.timeline.schema import (
    COLUMNS,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    track_column,
)
from xmlai_assets.timeline.tables import frames_to_table, write_csv

# Plausible ranges of the continuous values on an active track.
ACTIVE_RANGES = {
    "scale": (10.0, 300.0),
    "x": (-1.5, 1.5),
    "y": (-1.5, 1.5),
    "crop_l": (0.0, 60.0),
    "crop_r": (0.0, 60.0),
    "crop_t": (0.0, 60.0),
    "crop_b": (0.0, 60.0),
}


def make_master(seed: int, lengths: list[int], names: list[str] | None = None) -> pd.DataFrame:
    """A master table of videos with `lengths` rows each, time at 10 Hz, random layouts; V1
    is on screen in the first row of every video."""
    rng = np.random.default_rng(seed)
    names = names or [f"video {i:03d}" for i in range(len(lengths))]
    n = sum(lengths)
    data: dict[str, object] = {
        "video_id": np.repeat(names, lengths),
        "source_video_name": np.repeat([f"{v}.mp4" for v in names], lengths),
        "time": np.concatenate([np.arange(k) / 10.0 for k in lengths]) if n else np.zeros(0),
    }
    starts = np.cumsum(lengths) - np.asarray(lengths, dtype=int)
    for t in range(1, N_TRACKS + 1):
        active = rng.random(n) < (0.6 if t <= 3 else 0.05)
        if t == 1:
            active[starts[np.asarray(lengths) > 0]] = True  # every video opens on V1
        data[track_column(t, "active")] = active.astype(np.int8)
        data[track_column(t, "asset")] = np.where(active, rng.integers(0, 10, n), 0).astype(np.int8)
        for p in CONTINUOUS_PARAMS:
            lo, hi = ACTIVE_RANGES[p]
            values = np.round(rng.uniform(lo, hi, n), 3)
            data[track_column(t, p)] = np.where(active, values, INACTIVE_VALUES[p])
    return pd.DataFrame(data)[list(COLUMNS)]


def write_master(df: pd.DataFrame, path) -> None:
    write_csv(frames_to_table(df), path)
