"""One scikit-learn scaler per continuous parameter, pooled over the 20 tracks.

Scalers are fitted on the active entries of the training split only: an inactive track holds
placeholder values (scale 100, position 0, no crop) that say nothing about the layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from xmlai_assets.atomic import atomic_write_bytes
from xmlai_assets.features.frames import DataFileError, iter_batches
from xmlai_assets.timeline.schema import (
    ACTIVE,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    TRACK_COLUMNS,
    TRACK_PARAMS,
)

if TYPE_CHECKING:
    from sklearn.base import TransformerMixin

ScalerKind = Literal["standard", "minmax", "robust"]
# scikit-learn is imported where a scaler is fitted or described, not with this module: the
# code location loads it otherwise for every run.
SCALER_KINDS = ("standard", "minmax", "robust")
Scalers = Mapping[str, "TransformerMixin"]


def _scaler_types() -> dict[str, type[TransformerMixin]]:
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    return {"standard": StandardScaler, "minmax": MinMaxScaler, "robust": RobustScaler}


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


def fit_scalers(entries: Mapping[str, np.ndarray], kind: ScalerKind = "standard") -> Scalers:
    """Fit one scaler of `kind` per continuous parameter on its pooled active entries."""
    if kind not in SCALER_KINDS:
        raise ValueError(f"unknown scaler kind {kind!r}; choose one of {sorted(SCALER_KINDS)}")
    scalers: Scalers = {}
    for param in CONTINUOUS_PARAMS:
        x = entries[param]
        if x.size == 0:
            raise ValueError("the training split has no active track entries to fit scalers on")
        scalers[param] = _scaler_types()[kind]().fit(x.reshape(-1, 1))
    return scalers


def normalize(
    values: np.ndarray, scalers: Mapping[str, TransformerMixin], *, copy: bool = True
) -> np.ndarray:
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


def denormalize(encoded: np.ndarray, scalers: Mapping[str, TransformerMixin]) -> np.ndarray:
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


def _center_and_scale(scaler: TransformerMixin) -> tuple[float, float]:
    """The scaler as z = (x - center) / scale."""
    from sklearn.preprocessing import MinMaxScaler, RobustScaler, StandardScaler

    if isinstance(scaler, StandardScaler):
        return float(scaler.mean_[0]), float(scaler.scale_[0])
    if isinstance(scaler, RobustScaler):
        return float(scaler.center_[0]), float(scaler.scale_[0])
    if isinstance(scaler, MinMaxScaler):
        return float(scaler.data_min_[0]), float(1.0 / scaler.scale_[0])
    raise TypeError(f"unsupported scaler {type(scaler).__name__}")


def describe_scalers(
    scalers: Mapping[str, TransformerMixin], entries: Mapping[str, np.ndarray]
) -> dict:
    """Per parameter: z = (x - center) / scale, and the fitted data's count, mean, std, range."""
    stats = {}
    for param, scaler in scalers.items():
        x = entries[param]
        center, scale = _center_and_scale(scaler)
        stats[param] = {
            "center": center,
            "scale": scale,
            "count": int(x.size),
            "mean": float(x.mean()),
            "std": float(x.std()),
            "min": float(x.min()),
            "max": float(x.max()),
        }
    return stats


def save_scalers(
    scalers: Mapping[str, TransformerMixin],
    pkl_path: str | os.PathLike[str],
    json_path: str | os.PathLike[str],
    description: Mapping,
) -> tuple[bytes, bytes]:
    """Write the pickle and its readable JSON (with the pickle's hash) atomically; return both."""
    pickled = pickle.dumps(dict(scalers), protocol=5)
    doc = {
        "format": "z = (x - center) / scale, per parameter, pooled over tracks V1..V20",
        "sklearn_version": _sklearn_version(),
        "pickle": Path(pkl_path).name,
        "pickle_sha256": hashlib.sha256(pickled).hexdigest(),
        **description,
    }
    text = (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()
    atomic_write_bytes(pkl_path, pickled)
    atomic_write_bytes(json_path, text)
    return pickled, text


class AffineScaler:
    """z = (x - center) / scale: a fitted scaler as the JSON states it, with the `transform`
    and `inverse_transform` of a scikit-learn one. Nothing is unpickled to build it."""

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


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def load_scalers(json_path: str | os.PathLike[str]) -> dict[str, AffineScaler]:
    """The scalers of `scalers.json`, rebuilt from its numbers. `scalers.pkl` is written for
    users of the original format and never loaded: unpickling a file can run code."""
    try:
        params = json.loads(Path(json_path).read_text())["params"]
        scalers = {
            p: AffineScaler(float(params[p]["center"]), float(params[p]["scale"]))
            for p in CONTINUOUS_PARAMS
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataFileError(json_path, f"not a scalers file of this pipeline ({exc})") from exc
    return scalers
