"""The master CSV's column schema: identity columns, then 9 parameters for each of 20 tracks."""

from __future__ import annotations

N_TRACKS = 20
# The vocabulary of a track, for the CSV, the checks, the windows, the loss, the evaluation and
# the store alike: its 9 parameters in order; `active` and `asset` are categories, the rest are
# continuous values. In a [..., 9] array of one track: [..., ACTIVE], [..., ASSET], [..., VALUES].
TRACK_PARAMS = ("active", "asset", "scale", "x", "y", "crop_l", "crop_r", "crop_t", "crop_b")
CATEGORICAL_PARAMS = TRACK_PARAMS[:2]
CONTINUOUS_PARAMS = TRACK_PARAMS[2:]
ACTIVE = TRACK_PARAMS.index("active")
ASSET = TRACK_PARAMS.index("asset")
VALUES = slice(len(CATEGORICAL_PARAMS), None)
ON = 1  # the `active` class of a track on screen (0: off), the index of its probability
# The asset classes the `asset` head predicts (rules in timeline/asset_classes.py).
ASSET_CLASS_NAMES = (
    "main video (V1)",
    "video on V2",
    "text, title or generator",
    "still image",
    "other video",
    "nested sequence",
    "tagged class 6",
    "tagged class 7",
    "tagged class 8",
    "tagged class 9",
)
N_ASSET_CLASSES = len(ASSET_CLASS_NAMES)
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


# What each column means, in the words the UI shows beside it (one table for all 183).
ID_DESCRIPTIONS = {
    "video_id": "The timeline file's name without .xml: one video per file.",
    "source_video_name": "The file the first video clip plays (its path's stem).",
    "time": "Seconds from the start of the timeline (one row per sample, 10 a second).",
}
PARAM_DESCRIPTIONS = {
    "active": "1 when an enabled clip of the enabled track is on screen, else 0.",
    "asset": "What the clip shows, class 0..9: "
    + ", ".join(f"{i} {name}" for i, name in enumerate(ASSET_CLASS_NAMES))
    + " (a Class<n> or ID<n> tag in the clip name sets it).",
    "scale": "Basic Motion scale in percent of the source (100 when off).",
    "x": "Centre's horizontal offset from the frame centre, in frame widths (0 when off).",
    "y": "Centre's vertical offset from the frame centre, in frame heights (0 when off).",
    "crop_l": "Crop from the left, percent (0 when off).",
    "crop_r": "Crop from the right, percent (0 when off).",
    "crop_t": "Crop from the top, percent (0 when off).",
    "crop_b": "Crop from the bottom, percent (0 when off).",
}


def column_description(name: str) -> str:
    """The meaning of a master CSV column."""
    if name in ID_DESCRIPTIONS:
        return ID_DESCRIPTIONS[name]
    track, param = name.removeprefix("target_v").split("_", 1)
    return f"V{track}: {PARAM_DESCRIPTIONS[param]}"


def track_column(track: int, param: str) -> str:
    """Column name of one parameter of video track `track` (1-based)."""
    return f"target_v{track}_{param}"


TRACK_COLUMNS = tuple(track_column(n, p) for n in range(1, N_TRACKS + 1) for p in TRACK_PARAMS)
COLUMNS = ID_COLUMNS + TRACK_COLUMNS
