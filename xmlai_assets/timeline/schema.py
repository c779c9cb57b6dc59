"""The master CSV's column schema: identity columns, then 9 parameters for each of 20 tracks."""

from __future__ import annotations

N_TRACKS = 20
TRACK_PARAMS = ("active", "asset", "scale", "x", "y", "crop_l", "crop_r", "crop_t", "crop_b")
CONTINUOUS_PARAMS = TRACK_PARAMS[2:]
ID_COLUMNS = ("video_id", "source_video_name", "time")

# What a track shows when nothing is on it (or the track is disabled).
INACTIVE_VALUES = {
    "active": 0,
    "asset": 0,
    "scale": 100.0,
    "x": 0.0,
    "y": 0.0,
    "crop_l": 0.0,
    "crop_r": 0.0,
    "crop_t": 0.0,
    "crop_b": 0.0,
}


# Allowed range of each parameter, inclusive. A timeline with a value outside is refused at
# ingest (with the track, time and value), and the master CSV's check holds the same ranges.
# scale: Premiere's slider stops at 10,000 %; x/y: a centre a hundred frames off-screen is no
# layout.
PARAM_RANGES: dict[str, tuple[float, float]] = {
    "active": (0, 1),
    "asset": (0, 9),
    "scale": (0.0, 10_000.0),
    "x": (-100.0, 100.0),
    "y": (-100.0, 100.0),
    "crop_l": (0.0, 100.0),
    "crop_r": (0.0, 100.0),
    "crop_t": (0.0, 100.0),
    "crop_b": (0.0, 100.0),
}


def track_column(track: int, param: str) -> str:
    """Column name of one parameter of video track `track` (1-based)."""
    return f"target_v{track}_{param}"


TRACK_COLUMNS = tuple(track_column(n, p) for n in range(1, N_TRACKS + 1) for p in TRACK_PARAMS)
COLUMNS = ID_COLUMNS + TRACK_COLUMNS
