"""Model versions on disk: immutable `v{NNNN}/` folders and a `champion` pointer.

A version folder holds `model.safetensors` (weights; loading runs no code), `config.json`
(model and training settings, class weights), `scalers.json` (to turn predictions back into
the CSV's units without unpickling anything), `metadata.json` (metrics, data versions, seed,
package versions, creation time) and `loss_curve.png`. It is written beside the models folder
under a temporary name and renamed into place whole, so a version is complete or absent.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from xmlai_assets.atomic import atomic_write_bytes, process_alive
from xmlai_assets.model.config import SCORECARD
from xmlai_assets.model.data import Batch
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
from xmlai_assets.timeline.schema import (
    ACTIVE,
    ASSET,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    TRACK_PARAMS,
    VALUES,
)

CHAMPION = "champion"
_VERSION = re.compile(r"^v(\d{4,})$")


class ModelStoreError(ValueError):
    """A model version that cannot be found or read; the message says which and why."""


def _strict(value):
    """`value` with NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    return value


def _json_bytes(data: dict) -> bytes:
    text = json.dumps(_strict(data), indent=1, sort_keys=True, allow_nan=False)
    return (text + "\n").encode()


def versions(models_dir: str | os.PathLike[str]) -> list[str]:
    """Version names in the folder, oldest first."""
    folder = Path(models_dir)
    if not folder.is_dir():
        return []
    found = [(int(m[1]), p.name) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return [name for _, name in sorted(found)]


def save_version(
    models_dir: str | os.PathLike[str],
    model: MultiTrackTransformer,
    *,
    config: dict,
    metadata: dict,
    scalers_json: str | os.PathLike[str],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write a new immutable version folder and return it (the next free number)."""
    folder = Path(models_dir)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(folder)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=folder))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, staging / "model.safetensors", metadata={"format": "pt"})
        (staging / "config.json").write_bytes(
            _json_bytes({"model": model.config.as_dict(), **config})
        )
        (staging / "metadata.json").write_bytes(_json_bytes(metadata))
        shutil.copyfile(scalers_json, staging / "scalers.json")
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        for path in staging.iterdir():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
        staging.chmod(0o755)
        while True:
            existing = versions(folder)
            number = int(existing[-1][1:]) + 1 if existing else 1
            target = folder / f"v{number:04d}"
            try:
                os.rename(staging, target)  # fails if another run took the number first
                return target
            except OSError:
                if not target.exists():
                    raise
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def version_history(models_dir: str | os.PathLike[str]) -> list[dict]:
    """One row per version, oldest first: its loss beside the baselines' and the previous
    champion's, all on that version's validation windows, and whether it was promoted."""
    rows = []
    for name in versions(models_dir):
        try:
            metadata = json.loads((Path(models_dir) / name / "metadata.json").read_text())
            metrics = metadata["metrics"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged version is listed by nothing, and used by nothing
        row = {"version": name, "created": metadata.get("created", "")}
        for column in SCORECARD:
            loss = metrics.get(column, {}).get("loss")
            row[column] = None if loss is None or not math.isfinite(loss) else float(f"{loss:.4g}")
        row["promoted"] = bool(metadata.get("promotion", {}).get("promoted", False))
        rows.append(row)
    return rows


def remove_stale_staging(models_dir: Path, *, min_age_s: float = 60.0) -> list[Path]:
    """Remove the half-written version folders of writers that died before their rename."""
    removed = []
    for staging in models_dir.glob(".staging-*"):
        try:
            pid = int(staging.name.split("-")[1])
            if time.time() - staging.lstat().st_mtime < min_age_s or process_alive(pid):
                continue
            shutil.rmtree(staging)
            removed.append(staging)
        except (ValueError, IndexError, OSError):
            continue  # not one of ours, or gone already
    return removed


def set_champion(models_dir: str | os.PathLike[str], version: str) -> None:
    """Point `champion` at `version`, replacing the pointer atomically."""
    if not (Path(models_dir) / version / "model.safetensors").exists():
        raise ModelStoreError(f"{Path(models_dir) / version}: no such model version")
    atomic_write_bytes(Path(models_dir) / CHAMPION, f"{version}\n".encode())


def champion(models_dir: str | os.PathLike[str]) -> str | None:
    """The version the champion pointer names, or None. The pointer can only name a version
    folder inside `models_dir` (`v` and four or more digits): anything else is a
    `ModelStoreError`, never a path that is followed."""
    path = Path(models_dir) / CHAMPION
    try:
        name = path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelStoreError(f"{path}: unreadable champion pointer ({exc})") from exc
    if not _VERSION.fullmatch(name):
        raise ModelStoreError(f"{path}: {name[:80]!r} is not a model version name like v0001")
    return name


@dataclass
class LoadedModel:
    version: str
    folder: Path
    model: MultiTrackTransformer
    config: dict
    metadata: dict
    center: np.ndarray  # [7] per continuous parameter: z = (x - center) / scale
    scale: np.ndarray  # [7]

    def normalize(self, window: np.ndarray) -> np.ndarray:
        """CSV units [..., 180] → model inputs (continuous scaled; 0 where a track is off)."""
        tracks = np.asarray(window, dtype=np.float64).reshape(*window.shape[:-1], N_TRACKS, -1)
        out = tracks.copy()
        on = tracks[..., ACTIVE] == 1
        out[..., VALUES] = np.where(
            on[..., None], (tracks[..., VALUES] - self.center) / self.scale, 0.0
        )
        return out.reshape(window.shape).astype(np.float32)


def load_model(
    ref: str = CHAMPION, models_dir: str | os.PathLike[str] | None = None
) -> LoadedModel:
    """Rebuild the model of version `ref` ("v0003", or "champion") from its folder."""
    if models_dir is None:
        from xmlai_assets.paths import DataLayout

        models_dir = DataLayout.from_env().models_dir
    folder = Path(models_dir)
    version = champion(folder) if ref == CHAMPION else ref
    if version is None:
        raise ModelStoreError(f"{folder}: no champion model yet")
    if not _VERSION.fullmatch(version):
        raise ModelStoreError(f"{version!r} is not a model version name like v0001")
    path = folder / version
    try:
        config = json.loads((path / "config.json").read_text())
        metadata = json.loads((path / "metadata.json").read_text())
        scalers = json.loads((path / "scalers.json").read_text())["params"]
        model = MultiTrackTransformer(ModelConfig.from_dict(config["model"]))
        model.load_state_dict(load_file(path / "model.safetensors"))
        center = np.array([float(scalers[p]["center"]) for p in CONTINUOUS_PARAMS])
        scale = np.array([float(scalers[p]["scale"]) for p in CONTINUOUS_PARAMS])
    except Exception as exc:  # noqa: BLE001 - any damaged file (safetensors raises its own)
        raise ModelStoreError(
            f"{path}: cannot load model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    model.eval()
    return LoadedModel(
        version=version,
        folder=path,
        model=model,
        config=config,
        metadata=metadata,
        center=center,
        scale=scale,
    )


def predictor_in_units_of(
    loaded: LoadedModel, center: np.ndarray, scale: np.ndarray
) -> Callable[[Batch], dict[str, torch.Tensor]]:
    """`loaded`'s predictions on batches scaled by other scalers (`center`, `scale`), returned
    in those same units: a model of another version can then be scored on this version's
    validation windows with this version's loss, which is what makes the two comparable."""
    own_center = torch.as_tensor(loaded.center, dtype=torch.float32)
    own_scale = torch.as_tensor(loaded.scale, dtype=torch.float32)
    their_center = torch.as_tensor(np.asarray(center), dtype=torch.float32)
    their_scale = torch.as_tensor(np.asarray(scale), dtype=torch.float32)

    def predict(batch: Batch) -> dict[str, torch.Tensor]:
        b, t, _ = batch.sequences.shape
        tracks = batch.sequences.reshape(b, t, N_TRACKS, -1).clone()
        on = tracks[..., 0:1] == 1
        original = tracks[..., VALUES] * their_scale + their_center
        tracks[..., VALUES] = torch.where(on, (original - own_center) / own_scale, 0.0)
        with torch.no_grad():
            out = loaded.model(tracks.reshape(b, t, -1), batch.masks)
        out = {k: v.float() for k, v in out.items()}
        for i, param in enumerate(CONTINUOUS_PARAMS):
            original = out[param] * own_scale[i] + own_center[i]
            out[param] = (original - their_center[i]) / their_scale[i]
        return out

    return predict


@dataclass
class NextStep:
    """Predictions for the step after a window, in the CSV's units."""

    values: np.ndarray  # [B, 180]: per track active, asset, scale, x, y, crop_l..crop_b
    active_prob: np.ndarray  # [B, 20]: chance each track is on screen
    asset_prob: np.ndarray  # [B, 20, 10]


def predict(loaded: LoadedModel, window: np.ndarray, mask: np.ndarray | None = None) -> NextStep:
    """Next-step layout after `window` ([T, 180] or [B, T, 180] rows in the CSV's units;
    `mask` [B, T] marks real steps, the last real step being the one predicted from).

    Tracks predicted off get the CSV's placeholders for their asset and values.
    """
    window = np.asarray(window, dtype=np.float64)
    single = window.ndim == 2
    if single:
        window = window[None]
    if mask is None:
        mask = np.ones(window.shape[:2], dtype=bool)
    mask = np.asarray(mask, dtype=bool).reshape(window.shape[:2])
    last = mask.sum(axis=1) - 1
    if (last < 0).any():
        raise ValueError("every window needs at least one real step")
    with torch.no_grad():
        out = loaded.model(torch.from_numpy(loaded.normalize(window)), torch.from_numpy(mask))
    rows = torch.arange(len(window))
    pick = {k: v[rows, torch.from_numpy(last)].double().numpy() for k, v in out.items()}
    active_prob = torch.softmax(torch.from_numpy(pick["active"]), -1)[..., ASSET].numpy()
    asset_prob = torch.softmax(torch.from_numpy(pick["asset"]), -1).numpy()
    on = active_prob >= 0.5
    tracks = np.empty((len(window), N_TRACKS, len(TRACK_PARAMS)))
    tracks[..., ACTIVE] = on
    tracks[..., ASSET] = np.where(on, asset_prob.argmax(-1), INACTIVE_VALUES["asset"])
    for i, param in enumerate(CONTINUOUS_PARAMS):
        value = pick[param] * loaded.scale[i] + loaded.center[i]
        tracks[..., 2 + i] = np.where(on, value, INACTIVE_VALUES[param])
    values = tracks.reshape(len(window), -1)
    if single:
        return NextStep(values[0], active_prob[0], asset_prob[0])
    return NextStep(values, active_prob, asset_prob)
