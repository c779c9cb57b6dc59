"""One training run over a data folder: sequences in, an evaluated model version out.

Trains (resuming from the folder's checkpoint when it is of the same settings and inputs),
evaluates the best epoch against the baselines and the champion on the validation split (which
decides promotion) and on the test split (the scorecard, which decides nothing), writes a new
version, and moves the champion pointer only when the model beats every baseline and the
champion, and the champion has not moved meanwhile. The version's `metadata.json` records the
decision; the pointer's history (`model.store.champion_history`) records what happened.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import platform
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import sklearn
import torch

from xmlai_assets.atomic import atomic_path
from xmlai_assets.model.config import BASELINES, MODEL_VERSION
from xmlai_assets.model.data import BatchIterator, MultiTrackDataset
from xmlai_assets.model.evaluate import (
    Priors,
    evaluate,
    evaluate_against_baselines,
    model_predictor,
)
from xmlai_assets.model.store import (
    ModelStoreError,
    SavedVersion,
    StaleChampion,
    champion,
    champion_generation,
    load_model,
    predictor_in_units_of,
    save_version,
    set_champion,
)
from xmlai_assets.model.train import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    distributed_rank,
    train,
)
from xmlai_assets.model.transformer import count_parameters
from xmlai_assets.paths import SCALERS_JSON, SPLITS, TRAIN_CHECKPOINT, DataLayout, sequences_npz
from xmlai_assets.timeline.schema import CONTINUOUS_PARAMS
from xmlai_assets.timeline.tables import file_sha256


@dataclass
class Promotion:
    """Whether a new version became the champion, and why (or why not)."""

    promoted: bool
    reason: str
    previous: str | None  # the champion before this version
    previous_loss: float | None  # its loss on this version's validation windows


@dataclass
class ModelSummary:
    result: TrainResult
    metrics: dict[str, dict[str, float]]  # the scorecard: on the test split (`scored_on`)
    validation_metrics: dict[str, dict[str, float]]  # what promotion decided on
    scored_on: str
    promotion: Promotion
    version: SavedVersion
    parameters: int
    data_versions: dict[str, str]
    loss_curve_png: bytes

    def report(self) -> dict:
        """What the training step shows of this run, as plain JSON values: the same whether the
        run trained in the step's process or in another one (`remote/train.py`)."""
        result = self.result
        return {
            "version": self.version.name,
            "location": self.version.location,
            "history": [asdict(r) for r in result.history],
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "device": result.device,
            "seconds": result.seconds,
            "metrics": self.metrics,
            "validation_metrics": self.validation_metrics,
            "scored_on": self.scored_on,
            "promotion": asdict(self.promotion),
            "parameters": self.parameters,
            "data_versions": self.data_versions,
            "weights_sha256": self.version.weights_sha256,
            "weights_bytes": self.version.weights_bytes,
            "loss_curve_png": base64.b64encode(self.loss_curve_png).decode(),
        }


def read_split(layout: DataLayout, split: str) -> tuple[MultiTrackDataset, str]:
    """The windows of one split from the artifact store, and the sha256 of the file they were
    read from (one read, whatever the store)."""
    with layout.artifacts.reading(sequences_npz(split)) as path:
        return MultiTrackDataset.from_npz(path), file_sha256(path)


def loss_curve(history: list[EpochRecord], best_epoch: int) -> bytes:
    """PNG of training and validation loss per epoch (the same bytes for the same history)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=100)
    ax = fig.add_subplot()
    epochs = [r.epoch for r in history]
    ax.plot(epochs, [r.train_loss for r in history], label="train")
    ax.plot(epochs, [r.val_loss for r in history], label="validation")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("next-step loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _champion_on(
    layout: DataLayout,
    val_batches,
    scalers: dict,
    value_scale: dict[str, float],
    config: TrainConfig,
    class_weights,
    horizon: int,
) -> tuple[str | None, dict[str, float] | None, str]:
    """(the current champion, its metrics on these validation windows in this run's units and
    loss, a note when it could not be scored)."""
    try:
        current = champion(layout.models)
        if current is None:
            return None, None, "there is no champion yet"
        loaded = load_model(current, layout.models)
    except ModelStoreError as exc:
        return None, None, f"the champion cannot be loaded ({exc})"
    center = np.array([scalers[p]["center"] for p in CONTINUOUS_PARAMS])
    scale = np.array([scalers[p]["scale"] for p in CONTINUOUS_PARAMS])
    metrics = evaluate(
        predictor_in_units_of(loaded, center, scale),
        val_batches,
        value_scale=value_scale,
        weights=config.loss_weights,
        class_weights=class_weights,
        horizon=horizon,
    )
    return current, metrics, ""


def decide_promotion(
    metrics: dict[str, dict[str, float]], current: str | None, note: str = ""
) -> Promotion:
    """A new version becomes the champion only when it beats every baseline of the scorecard
    (the fair copy and the hazard table among them) and the current champion, all scored on
    the new version's validation windows."""
    loss = metrics["model"]["loss"]
    bars = {
        name: metrics[name]["loss"]
        for name in BASELINES
        if name in metrics and math.isfinite(metrics[name]["loss"])
    }
    best = min(bars, key=bars.__getitem__) if bars else None
    previous_loss = metrics["champion"]["loss"] if "champion" in metrics else None
    if best is not None and not loss < bars[best]:
        return Promotion(
            False,
            f"validation loss {loss:.4f} does not beat the best baseline, {best} "
            f"({bars[best]:.4f})",
            current,
            previous_loss,
        )
    if previous_loss is not None and not loss < previous_loss:
        return Promotion(
            False,
            f"validation loss {loss:.4f} does not beat the champion {current} "
            f"({previous_loss:.4f} on the same validation windows)",
            current,
            previous_loss,
        )
    versus = (
        f"the champion {current} ({previous_loss:.4f} on the same validation windows)"
        if previous_loss is not None
        else note
    )
    beaten = f"every baseline (the best, {best}: {bars[best]:.4f})" if best else "no baseline"
    return Promotion(
        True, f"validation loss {loss:.4f} beats {beaten} and {versus}", current, previous_loss
    )


def fetch_checkpoint(layout: DataLayout, log: Callable[[str], None] = print) -> bool:
    """The remote artifact store's copy of the training checkpoint, where it has one, becomes
    the local checkpoint (a training pod starts on an empty disk). Returns whether it did."""
    store = layout.artifacts
    try:
        with store.reading(TRAIN_CHECKPOINT) as copy, atomic_path(layout.train_checkpoint) as tmp:
            shutil.copyfile(copy, tmp)
    except FileNotFoundError:
        return False
    log(f"checkpoint fetched from {store.location(TRAIN_CHECKPOINT)}")
    return True


def keep_checkpoint(layout: DataLayout, path: Path, log: Callable[[str], None] = print) -> None:
    """A copy of the checkpoint just written to `path`, in the remote artifact store. A copy
    that fails is said and training goes on: the next checkpoint tries again."""
    store = layout.artifacts
    try:
        with store.writing(TRAIN_CHECKPOINT) as tmp:
            shutil.copyfile(path, tmp)
    except OSError as exc:
        log(
            f"warning: checkpoint not copied to {store.location(TRAIN_CHECKPOINT)} "
            f"({type(exc).__name__}: {str(exc)[:200]}); training goes on"
        )


def drop_checkpoint(layout: DataLayout, log: Callable[[str], None] = print) -> None:
    """The remote store's copy of the checkpoint removed, once the version is written. A removal
    that fails is said, and the run stands: the copy only lets the next run of the same
    settings and inputs pick up from it, as after a crash."""
    store = layout.artifacts
    try:
        store.delete(TRAIN_CHECKPOINT)
    except OSError as exc:
        log(
            f"warning: checkpoint {store.location(TRAIN_CHECKPOINT)} not removed "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        )


def fit_model(
    layout: DataLayout,
    config: TrainConfig,
    *,
    log: Callable[[str], None] = print,
    extra_metadata: dict | None = None,
) -> ModelSummary | None:
    read = {split: read_split(layout, split) for split in SPLITS}
    train_data, val_data, test_data = (read[split][0] for split in SPLITS)
    scalers_json = layout.artifacts.read_bytes(SCALERS_JSON)
    # content hashes of what training reads
    data_versions = {f"{split}_sequences": read[split][1] for split in SPLITS} | {
        "scalers": hashlib.sha256(scalers_json).hexdigest()
    }
    data_key = hashlib.sha256(json.dumps(data_versions, sort_keys=True).encode()).hexdigest()
    # what the baselines know of the training split: the model starts from it, and the
    # scorecard's baselines are it
    priors = Priors.from_training(BatchIterator(train_data, 256, shuffle=False))
    remote = layout.artifacts.local_path() is None
    if remote:
        fetch_checkpoint(layout, log)
    result = train(
        train_data,
        val_data,
        config,
        checkpoint=layout.train_checkpoint,
        data_version=data_key,
        log=log,
        priors=priors,
        on_checkpoint=partial(keep_checkpoint, layout, log=log) if remote else None,
    )

    if distributed_rank()[0] != 0:
        return None  # one rank of a distributed run: the first evaluates and writes the version
    scalers = json.loads(scalers_json)["params"]
    value_scale = {param: stats["scale"] for param, stats in scalers.items()}

    def scorecard(data: MultiTrackDataset) -> tuple[dict, str | None, str]:
        """The model, the baselines and the current champion on `data`'s windows."""
        batches = list(BatchIterator(data, 64, shuffle=False))
        metrics = evaluate_against_baselines(
            model_predictor(result.model),
            batches,
            priors,
            value_scale=value_scale,
            weights=config.loss_weights,
            class_weights=result.class_weights,
            horizon=data.steps_per_second,
        )
        current, champion_metrics, note = _champion_on(
            layout,
            batches,
            scalers,
            value_scale,
            config,
            result.class_weights,
            data.steps_per_second,
        )
        if champion_metrics is not None:
            metrics["champion"] = champion_metrics
        return metrics, current, note

    # the champion is chosen on validation; the scorecard is the test's, which chose nothing.
    # The pointer's generation is read first: if the champion moves while this version is
    # compared with it, the swap below is refused rather than made on a stale comparison.
    generation = champion_generation(layout.models)
    validation_metrics, current, note = scorecard(val_data)
    promotion = decide_promotion(validation_metrics, current, note)
    if len(test_data):
        metrics, scored_on = scorecard(test_data)[0], "test"
    else:
        metrics, scored_on = validation_metrics, "validation"
        log("no test timelines (too few videos): the scorecard is the validation split's")
    png = loss_curve(result.history, result.best_epoch)
    metadata = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": MODEL_VERSION,
        "seed": config.seed,
        "data_versions": data_versions,
        "metrics": metrics,
        "scored_on": scored_on,
        "validation_metrics": validation_metrics,
        "promotion": asdict(promotion),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "history": [asdict(r) for r in result.history],
        "device": result.device,
        "train_seconds": round(result.seconds, 3),
        "train_windows": len(train_data),
        "val_windows": len(val_data),
        "test_windows": len(test_data),
        "packages": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
        },
        **(extra_metadata or {}),
    }
    class_weights = (
        {k: v.tolist() for k, v in result.class_weights.items()} if result.class_weights else None
    )
    version = save_version(
        layout.models,
        result.model,
        config={"train": config.as_dict(), "class_weights": class_weights},
        metadata=metadata,
        scalers_json=scalers_json,
        extra_files={"loss_curve.png": png},
    )
    if promotion.promoted:
        try:
            set_champion(layout.models, version.name, generation=generation)
            log(f"{version.name} is the champion now: {promotion.reason}")
        except StaleChampion as exc:
            promotion = Promotion(False, f"not promoted: {exc}", current, promotion.previous_loss)
            log(f"{version.name} {promotion.reason}")
    else:
        log(f"{version.name} is not promoted: {promotion.reason}")
    # the run is complete and its version written: a rerun starts afresh
    layout.train_checkpoint.unlink(missing_ok=True)
    if remote:
        drop_checkpoint(layout, log)
    return ModelSummary(
        result=result,
        metrics=metrics,
        validation_metrics=validation_metrics,
        scored_on=scored_on,
        promotion=promotion,
        version=version,
        parameters=count_parameters(result.model),
        data_versions=data_versions,
        loss_curve_png=png,
    )
