"""One scaler per continuous parameter, pooled over the 20 tracks.

Scalers are fitted on the active entries of the training split only: an inactive track holds
placeholder values (scale 100, position 0, no crop) that say nothing about the layout. Each is
z = (x - center) / scale, fitted with numpy by the formulas of scikit-learn's StandardScaler,
MinMaxScaler and RobustScaler (the tests hold them equal): importing scikit-learn costs a
fresh process more time than the whole fit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Mapping
from typing import Literal, get_args

import numpy as np

from xmlai_assets.features.frames import DataFileError, iter_batches
from xmlai_assets.timeline.schema import (
    ACTIVE,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    TRACK_COLUMNS,
    TRACK_PARAMS,
)

ScalerKind = Literal["standard", "minmax", "robust"]
SCALER_KINDS = get_args(ScalerKind)
_EPS = np.finfo(np.float64).eps


class AffineScaler:
    """z = (x - center) / scale, with the `transform` and `inverse_transform` of a
    scikit-learn scaler."""

    def __init__(self, center: float, scale: float) -> None:
        if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"not a usable scaler: center {center}, scale {scale}")
        self.center = center
        self.scale = scale

    def transform(self, x: np.ndarray) -> np.ndarray:
        z = np.subtract(x, self.center)  # one new array, then in place: no second temporary
        z /= self.scale
        return z

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        x = np.multiply(z, self.scale)
        x += self.center
        return x

    def __repr__(self) -> str:
        return f"AffineScaler(center={self.center!r}, scale={self.scale!r})"


Scalers = Mapping[str, AffineScaler]


def _fit(x: np.ndarray, kind: ScalerKind) -> AffineScaler:
    """The center and scale scikit-learn's scaler of `kind` fits on the 1-D `x`."""
    column = x.reshape(-1, 1)
    n = x.size
    if kind == "standard":
        # the corrected two-pass variance of `_incremental_mean_and_var`
        mean = column.sum(axis=0)[0] / n
        deviation = column - mean
        correction = deviation.sum(axis=0)[0]
        var = ((deviation**2).sum(axis=0)[0] - correction**2 / n) / n
        constant = var <= n * _EPS * var + (n * mean * _EPS) ** 2
        return AffineScaler(float(mean), 1.0 if constant else float(np.sqrt(var)))
    if kind == "minmax":
        low, high = np.nanmin(column, axis=0)[0], np.nanmax(column, axis=0)[0]
        span = high - low
        if span < 10 * _EPS:
            span = 1.0
        # MinMaxScaler keeps 1 / span; read back, that is its scale
        return AffineScaler(float(low), float(1.0 / (1.0 / span)))
    if kind == "robust":
        center = np.nanmedian(column, axis=0)[0]
        q1, q3 = np.nanpercentile(x, (25.0, 75.0))
        iqr = q3 - q1
        return AffineScaler(float(center), float(iqr if iqr >= 10 * _EPS else 1.0))
    raise ValueError(f"unknown scaler kind {kind!r}; choose one of {sorted(SCALER_KINDS)}")


def active_entries(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per continuous parameter, its values on active tracks pooled over all tracks (1-D
    float64), from `values[row, track, param]`."""
    active = values[:, :, ACTIVE] == 1
    return {
        param: values[:, :, TRACK_PARAMS.index(param)][active].astype(np.float64)
        for param in CONTINUOUS_PARAMS
    }


def read_active_entries(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], int, int]:
    """`active_entries` of a split CSV, streamed (only the active entries are ever held), with
    the file's row and video counts."""
    parts: dict[str, list[np.ndarray]] = {param: [] for param in CONTINUOUS_PARAMS}
    rows, videos = 0, set()
    for batch in iter_batches(path):
        values = np.stack(
            [batch.column(name).to_numpy(zero_copy_only=False) for name in TRACK_COLUMNS], axis=1
        ).reshape(batch.num_rows, N_TRACKS, len(TRACK_PARAMS))
        for param, entries in active_entries(values).items():
            parts[param].append(entries)
        rows += batch.num_rows
        videos.update(batch.column("video_id").unique().to_pylist())
    return {p: np.concatenate(v) if v else np.zeros(0) for p, v in parts.items()}, rows, len(videos)


def fit_scalers(
    entries: Mapping[str, np.ndarray], kind: ScalerKind = "standard"
) -> dict[str, AffineScaler]:
    """Fit one scaler of `kind` per continuous parameter on its pooled active entries."""
    scalers = {}
    for param in CONTINUOUS_PARAMS:
        x = np.asarray(entries[param], dtype=np.float64)
        if x.size == 0:
            raise ValueError("the training split has no active track entries to fit scalers on")
        scalers[param] = _fit(x, kind)
    return scalers


def normalize(values: np.ndarray, scalers: Scalers, *, copy: bool = True) -> np.ndarray:
    """`values` as float32 with continuous parameters scaled; inactive entries become 0.

    `active` and `asset` stay the integers they are. With `copy=False` a float32 input is
    normalized in place.
    """
    out = values.astype(np.float32, copy=copy)
    active = values[:, :, ACTIVE] == 1
    for param in CONTINUOUS_PARAMS:
        p = TRACK_PARAMS.index(param)
        column = out[:, :, p]
        scaled = scalers[param].transform(column[active].reshape(-1, 1)).ravel()
        column[:] = 0.0
        column[active] = scaled
    return out


def denormalize(encoded: np.ndarray, scalers: Scalers) -> np.ndarray:
    """Undo `normalize`: original units as float64, inactive entries back to their placeholders."""
    out = encoded.astype(np.float64)
    active = out[:, :, ACTIVE] == 1
    for param in CONTINUOUS_PARAMS:
        p = TRACK_PARAMS.index(param)
        column = out[:, :, p]
        original = scalers[param].inverse_transform(column[active].reshape(-1, 1)).ravel()
        column[:] = INACTIVE_VALUES[param]
        column[active] = original
    return out


def describe_scalers(scalers: Scalers, entries: Mapping[str, np.ndarray]) -> dict:
    """Per parameter: z = (x - center) / scale, and the fitted data's count, mean, std, range."""
    stats = {}
    for param, scaler in scalers.items():
        x = entries[param]
        stats[param] = {
            "center": scaler.center,
            "scale": scaler.scale,
            "count": int(x.size),
            "mean": float(x.mean()),
            "std": float(x.std()),
            "min": float(x.min()),
            "max": float(x.max()),
        }
    return stats


def scalers_files(scalers: Scalers, pickle_name: str, description: Mapping) -> tuple[bytes, bytes]:
    """The pickle of the fitted scalers and its readable JSON (naming the pickle and its hash):
    the two files of the `scalers` asset, as bytes."""
    pickled = pickle.dumps(dict(scalers), protocol=5)
    doc = {
        "format": "z = (x - center) / scale, per parameter, pooled over tracks V1..V20",
        "pickle": pickle_name,
        "pickle_sha256": hashlib.sha256(pickled).hexdigest(),
        **description,
    }
    return pickled, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def load_scalers(text: bytes | str, origin: str = "scalers.json") -> dict[str, AffineScaler]:
    """The scalers of a `scalers.json` (its bytes; `origin` names it in errors), rebuilt from
    its numbers. `scalers.pkl` is written for tools that want the objects and never loaded:
    unpickling a file can run code."""
    try:
        params = json.loads(text)["params"]
        scalers = {
            p: AffineScaler(float(params[p]["center"]), float(params[p]["scale"]))
            for p in CONTINUOUS_PARAMS
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise DataFileError(origin, f"not a scalers file of this pipeline ({exc})") from exc
    return scalers
