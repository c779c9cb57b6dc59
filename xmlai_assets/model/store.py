"""Model versions in an artifact store (a local folder or an fsspec URL): immutable
`v{NNNN}/` folders and a champion pointer that moves by compare-and-swap.

A version folder holds `model.safetensors` (weights; loading runs no code), `config.json`
(model and training settings, class weights), `scalers.json` (to turn predictions back into
the CSV's units without unpickling anything), `loss_curve.png` and `metadata.json` (metrics,
data versions, seed, package versions, creation time).

- A writer claims its number with a create-only `claim.json`: two trainers, on one host or two,
  never get the same version.
- `metadata.json` is written last and commits the version: readers list and load only committed
  versions, so a half-written one is seen by nothing.
- The champion is the latest of `champions/{NNNNNNNN}.json`, each created create-only from the
  generation its writer read: a swap decided against a champion that has moved since is refused
  (`StaleChampion`), and the files are the history of every promotion.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from xmlai_assets.artifacts import ArtifactExists, ArtifactStore
from xmlai_assets.atomic import process_alive
from xmlai_assets.model.config import SCORECARD
from xmlai_assets.model.data import Batch
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer
from xmlai_assets.timeline.schema import (
    ACTIVE,
    ASSET,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    ON,
    TRACK_PARAMS,
    VALUES,
)

CHAMPION = "champion"  # the ref that names the champion; also the pointer file of old stores
CHAMPIONS = "champions"  # the pointer's generations
CLAIM = "claim.json"
COMMIT = "metadata.json"
WEIGHTS = "model.safetensors"
_VERSION = re.compile(r"^v(\d{4,})$")
_GENERATION = re.compile(r"^(\d{8})\.json$")

Models = str | os.PathLike[str] | ArtifactStore


class ModelStoreError(ValueError):
    """A model version that cannot be found or read; the message says which and why."""


class StaleChampion(ModelStoreError):
    """The champion moved after the caller read it: the swap it asked for is refused."""


def model_store(models: Models) -> ArtifactStore:
    """The store of model versions: a folder, a URL, or a store already."""
    return models if isinstance(models, ArtifactStore) else ArtifactStore(models)


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


def _numbered(store: ArtifactStore) -> list[str]:
    """Every claimed version name, committed or not, oldest first."""
    found = [(int(m[1]), name) for name in store.list() if (m := _VERSION.match(name))]
    return [name for _, name in sorted(found)]


def versions(models: Models) -> list[str]:
    """Committed version names, oldest first."""
    store = model_store(models)
    return [name for name in _numbered(store) if store.exists(f"{name}/{COMMIT}")]


@dataclass(frozen=True)
class SavedVersion:
    name: str  # v0001
    location: str  # its folder: a path, or a URL
    weights_sha256: str
    weights_bytes: int


def save_version(
    models: Models,
    model: MultiTrackTransformer,
    *,
    config: dict,
    metadata: dict,
    scalers_json: bytes,
    extra_files: dict[str, bytes] | None = None,
) -> SavedVersion:
    """Claim the next free version number, write the version's files, then commit it."""
    store = model_store(models)
    remove_abandoned_versions(store)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    files = {
        WEIGHTS: save_safetensors(weights, metadata={"format": "pt"}),
        "config.json": _json_bytes({"model": model.config.as_dict(), **config}),
        "scalers.json": scalers_json,
        **(extra_files or {}),
    }
    name = _claim(store)
    for file, data in files.items():
        store.write_bytes(f"{name}/{file}", data)
    store.write_bytes(f"{name}/{COMMIT}", _json_bytes(metadata))
    return SavedVersion(
        name=name,
        location=store.location(name),
        weights_sha256=hashlib.sha256(files[WEIGHTS]).hexdigest(),
        weights_bytes=len(files[WEIGHTS]),
    )


def _claim(store: ArtifactStore) -> str:
    """The next version number, taken by a create-only claim that names this writer."""
    claim = _json_bytes({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
    while True:
        existing = _numbered(store)
        name = f"v{int(existing[-1][1:]) + 1 if existing else 1:04d}"
        try:
            store.create(f"{name}/{CLAIM}", claim)
            return name
        except ArtifactExists:
            continue  # another writer took it first: the next one


def version_history(models: Models) -> list[dict]:
    """One row per version, oldest first: its loss beside the baselines' and the previous
    champion's, all on that version's validation windows, and whether it ever became the
    champion (from the pointer's history)."""
    store = model_store(models)
    crowned = {entry["version"] for entry in champion_history(store)}
    rows = []
    for name in versions(store):
        try:
            metadata = json.loads(store.read_bytes(f"{name}/{COMMIT}"))
            metrics = metadata["metrics"]
        except (OSError, ValueError, KeyError):
            continue  # a damaged version is listed by nothing, and used by nothing
        row = {"version": name, "created": metadata.get("created", "")}
        for column in SCORECARD:
            loss = metrics.get(column, {}).get("loss")
            row[column] = None if loss is None or not math.isfinite(loss) else float(f"{loss:.4g}")
        row["promoted"] = name in crowned
        rows.append(row)
    return rows


def remove_abandoned_versions(models: Models, *, min_age_s: float = 60.0) -> list[str]:
    """Delete the files of versions whose writer died before committing them (a claim by a
    process of this host that no longer runs, older than `min_age_s`). The claim stays, so the
    number is never handed out again. Returns the versions cleaned."""
    store = model_store(models)
    here = socket.gethostname()
    cleaned = []
    for name in _numbered(store):
        if store.exists(f"{name}/{COMMIT}"):
            continue
        try:
            claim = json.loads(store.read_bytes(f"{name}/{CLAIM}"))
            if claim["host"] != here or process_alive(int(claim["pid"])):
                continue
            if time.time() - float(claim["at"]) < min_age_s:
                continue
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a claim of this pipeline: leave it
        files = [f for f in store.list(name) if f != CLAIM]
        for file in files:
            store.delete(f"{name}/{file}")
        if files:
            cleaned.append(name)
    return cleaned


def _generations(store: ArtifactStore) -> list[int]:
    return sorted(int(m[1]) for f in store.list(CHAMPIONS) if (m := _GENERATION.match(f)))


def _pointer(store: ArtifactStore, name: str) -> dict:
    """A pointer file's content, checked: it can only name a version folder of this store."""
    try:
        raw = store.read_bytes(name)
        text = raw.decode()
        entry = json.loads(text) if text.lstrip().startswith("{") else {"version": text.strip()}
        version = entry["version"]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelStoreError(
            f"{store.location(name)}: unreadable champion pointer ({exc})"
        ) from exc
    if not isinstance(version, str) or not _VERSION.fullmatch(version):
        raise ModelStoreError(
            f"{store.location(name)}: {str(version)[:80]!r} is not a model version name like v0001"
        )
    return entry


def champion_generation(models: Models) -> int:
    """How many times the champion has moved (0: never, or only by an old store's pointer)."""
    generations = _generations(model_store(models))
    return generations[-1] if generations else 0


def champion(models: Models) -> str | None:
    """The version the champion pointer names, or None. The pointer can only name a version
    folder of the store (`v` and four or more digits): anything else is a `ModelStoreError`,
    never a path that is followed."""
    store = model_store(models)
    generation = champion_generation(store)
    name = f"{CHAMPIONS}/{generation:08d}.json" if generation else CHAMPION
    try:
        return _pointer(store, name)["version"]
    except FileNotFoundError:
        return None


def champion_history(models: Models) -> list[dict]:
    """Every move of the champion, oldest first: generation, version and the one it replaced
    (an old store's single pointer counts as generation 0)."""
    store = model_store(models)
    history = []
    try:
        legacy = _pointer(store, CHAMPION)
        history.append({"generation": 0, "version": legacy["version"], "replaces": None})
    except (FileNotFoundError, ModelStoreError):
        pass
    for generation in _generations(store):
        try:
            entry = _pointer(store, f"{CHAMPIONS}/{generation:08d}.json")
        except (FileNotFoundError, ModelStoreError):
            continue
        version, replaces = entry["version"], entry.get("replaces")
        history.append({"generation": generation, "version": version, "replaces": replaces})
    return history


def set_champion(models: Models, version: str, *, generation: int | None = None) -> int:
    """Make `version` the champion and return the pointer's new generation.

    `generation` is the champion's generation the caller read before it decided (see
    `champion_generation`); when the champion has moved since, the swap is refused with
    `StaleChampion`. None swaps from whatever is current, still refused if another writer
    swaps at the same moment."""
    store = model_store(models)
    if not _VERSION.fullmatch(version) or version not in versions(store):
        raise ModelStoreError(f"{store.location(version)}: no such committed model version")
    current = champion_generation(store)
    if generation is not None and generation != current:
        raise StaleChampion(
            f"the champion moved to {champion(store)} (generation {current}) after generation "
            f"{generation} was read; {version} was not compared with it"
        )
    try:
        replaces = champion(store)
    except ModelStoreError:
        replaces = None  # a damaged pointer is replaced, not followed
    entry = _json_bytes({"version": version, "replaces": replaces})
    try:
        store.create(f"{CHAMPIONS}/{current + 1:08d}.json", entry)
    except ArtifactExists:
        raise StaleChampion(
            f"another writer moved the champion at the same moment; {version} was not "
            "compared with its choice"
        ) from None
    return current + 1


@dataclass
class LoadedModel:
    version: str
    location: str  # its folder: a path, or a URL
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


def load_model(ref: str = CHAMPION, models: Models | None = None) -> LoadedModel:
    """Rebuild the model of version `ref` ("v0003", or "champion") from its committed files."""
    if models is None:
        from xmlai_assets.paths import DataLayout

        models = DataLayout.from_env().models
    store = model_store(models)
    version = champion(store) if ref == CHAMPION else ref
    if version is None:
        raise ModelStoreError(f"{store.location()}: no champion model yet")
    if not _VERSION.fullmatch(version):
        raise ModelStoreError(f"{version!r} is not a model version name like v0001")
    location = store.location(version)
    try:
        metadata = json.loads(store.read_bytes(f"{version}/{COMMIT}"))
        config = json.loads(store.read_bytes(f"{version}/config.json"))
        scalers = json.loads(store.read_bytes(f"{version}/scalers.json"))["params"]
        model = MultiTrackTransformer(ModelConfig.from_dict(config["model"]))
        model.load_state_dict(load_safetensors(store.read_bytes(f"{version}/{WEIGHTS}")))
        center = np.array([float(scalers[p]["center"]) for p in CONTINUOUS_PARAMS])
        scale = np.array([float(scalers[p]["scale"]) for p in CONTINUOUS_PARAMS])
    except Exception as exc:  # noqa: BLE001 - any damaged file (safetensors raises its own)
        raise ModelStoreError(
            f"{location}: cannot load model ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    model.eval()
    return LoadedModel(
        version=version,
        location=location,
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
        on = tracks[..., ACTIVE : ACTIVE + 1] == ON
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
    active_prob = torch.softmax(torch.from_numpy(pick["active"]), -1)[..., ON].numpy()
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


def next_step_values(
    loaded: LoadedModel, values: np.ndarray, offsets: np.ndarray, rows: np.ndarray,
    tracks: np.ndarray, window: int = 100,
) -> np.ndarray:  # fmt: skip
    """[N, 7] the values (CSV units) the model gives track `tracks[i]` at row `rows[i]` of a
    split's frames `values` [rows, 20, 9] (videos starting at `offsets`), predicted from up
    to `window` steps before it in its video, whatever it says of the track being on. NaN
    where the row starts its video: there is nothing to predict from."""
    out = np.full((len(rows), len(CONTINUOUS_PARAMS)), np.nan)
    video = np.searchsorted(offsets, rows, side="right") - 1
    start = np.maximum(offsets[video], rows - window)
    todo = np.flatnonzero(rows > start)
    for chunk in np.array_split(todo, max(1, -(-len(todo) // 64))):
        if not len(chunk):
            continue
        batch = np.zeros((len(chunk), window, N_TRACKS * len(TRACK_PARAMS)))
        mask = np.zeros((len(chunk), window), dtype=bool)
        for b, i in enumerate(chunk):
            steps = values[start[i] : rows[i]].reshape(rows[i] - start[i], -1)
            batch[b, : len(steps)], mask[b, : len(steps)] = steps, True
        with torch.no_grad():
            outputs = loaded.model(
                torch.from_numpy(loaded.normalize(batch)), torch.from_numpy(mask)
            )
        last = torch.from_numpy(mask.sum(1) - 1)
        picked = torch.arange(len(chunk))
        for j, param in enumerate(CONTINUOUS_PARAMS):
            scaled = outputs[param][picked, last, torch.from_numpy(tracks[chunk])].double()
            out[chunk, j] = scaled.numpy() * loaded.scale[j] + loaded.center[j]
    return out


PLACEMENT = "placement"  # the placement model's versions, in a folder of the model store
PLACEMENT_FILE = "placement.json"


def placement_store(models: Models) -> ArtifactStore:
    store = model_store(models)
    return ArtifactStore(store.location(PLACEMENT))


def save_placement_version(models: Models, model_json: bytes, metadata: dict) -> SavedVersion:
    """Claim the next placement version, write the model, then commit it with `metadata`."""
    store = placement_store(models)
    remove_abandoned_versions(store)
    name = _claim(store)
    store.write_bytes(f"{name}/{PLACEMENT_FILE}", model_json)
    store.write_bytes(f"{name}/{COMMIT}", _json_bytes(metadata))
    return SavedVersion(
        name=name,
        location=store.location(name),
        weights_sha256=hashlib.sha256(model_json).hexdigest(),
        weights_bytes=len(model_json),
    )


def load_placement_version(models: Models, ref: str = "latest") -> tuple[str, bytes]:
    """(version name, model file) of a committed placement version: `latest` or `vNNNN`."""
    store = placement_store(models)
    found = versions(store)
    if not found:
        raise ModelStoreError(
            f"{store.location()}: no placement model yet; materialize placement_model"
        )
    name = found[-1] if ref == "latest" else ref
    if name not in found:
        raise ModelStoreError(f"{store.location(name)}: no such committed placement version")
    return name, store.read_bytes(f"{name}/{PLACEMENT_FILE}")


def suggest(
    timeline: str | os.PathLike[str],
    track: int,
    *,
    clip: str | None = None,
    at_seconds: float | None = None,
    top: int = 3,
    models: Models | None = None,
    version: str = "latest",
    out: str | os.PathLike[str] | None = None,
    replace_keyframes: bool = False,
):
    """Placements for a clip of a timeline export: the clip on video track `track` (1-based)
    named `clip` or playing at `at_seconds`, ranked by a placement version (`latest`, or
    `vNNNN`) of the model store. With `out`, a copy of the timeline with the first suggestion
    applied to that clip is written there. Returns (the clip, the version, the suggestions)."""
    from xmlai_assets.atomic import atomic_write_bytes
    from xmlai_assets.model.placement import PlacementModel, suggest_for
    from xmlai_assets.paths import DataLayout
    from xmlai_assets.timeline import parse_timeline_with_info
    from xmlai_assets.timeline.placement import Placement, find_clip, place_clip
    from xmlai_assets.timeline.schema import TRACK_COLUMNS

    ref = find_clip(timeline, track, name=clip, at_seconds=at_seconds)
    name, data = load_placement_version(models or DataLayout.from_env().models, version)
    model = PlacementModel.from_json(data)
    frames, info = parse_timeline_with_info(timeline)
    values = frames[list(TRACK_COLUMNS)].to_numpy(np.float64).reshape(len(frames), 20, -1)
    # the clip's first sample: the first row showing its first frame
    time, seconds = frames["time"].to_numpy(), ref.start / float(info.fps)
    row = min(int(np.searchsorted(time, seconds - 1e-9)), len(time) - 1)
    found = suggest_for(model, values, row, track - 1, ref.asset, top)
    if out is not None and found:
        placed = place_clip(
            timeline,
            ref.id,
            Placement(**found[0].as_dict()),
            replace_keyframes=replace_keyframes,
        )
        atomic_write_bytes(out, placed)
    return ref, name, found
