"""The training loop: AdamW, clipping, a learning-rate schedule, early stopping, checkpoints
that resume exactly, and a guard against non-finite steps. No framework, one function."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from xmlai_assets.atomic import atomic_path
from xmlai_assets.model.config import TrainConfig
from xmlai_assets.model.data import BatchIterator, MultiTrackDataset
from xmlai_assets.model.evaluate import evaluate, model_predictor
from xmlai_assets.model.loss import class_weights_from, next_step_loss
from xmlai_assets.model.transformer import MultiTrackTransformer


class TrainingError(RuntimeError):
    """Training cannot go on; the message says at which epoch and step, and why."""


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float
    val_loss: float
    learning_rate: float
    seconds: float
    skipped_steps: int


@dataclass
class TrainResult:
    model: MultiTrackTransformer  # with the weights of the best validation epoch
    config: TrainConfig
    history: list[EpochRecord]
    best_epoch: int
    best_val_loss: float
    stopped_early: bool
    resumed_from_epoch: int
    device: str
    seconds: float
    class_weights: dict[str, torch.Tensor] | None


def resolve_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device 'cuda' was asked for, but CUDA is not available here")
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(choice)


def make_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau:
    if config.schedule == "cosine":
        warmup = max(1, round(config.warmup_fraction * total_steps))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return 0.5 * (1.0 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_epochs, config.step_gamma)
    if config.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=config.step_gamma, patience=config.plateau_patience
        )
    if config.schedule == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise ValueError(f"unknown schedule {config.schedule!r}")


def _rng_state(shuffle: torch.Generator) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict[str, torch.Tensor], shuffle: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    shuffle.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def load_checkpoint(path: Path, log: Callable[[str], None] = print) -> dict | None:
    """A checkpoint written by `train`, read without executing code (weights_only); None when
    there is none. One that cannot be read (truncated, damaged, or not ours) is moved aside with
    a warning, so that training starts over instead of failing on it every time."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not isinstance(state.get("key"), str):
            raise ValueError("not a checkpoint of this training loop")
    except Exception as exc:  # noqa: BLE001 - any unreadable file: set aside, start over
        set_aside(path, exc, log)
        return None
    return state


def set_aside(path: Path, exc: BaseException, log: Callable[[str], None]) -> Path:
    """Move an unusable checkpoint out of the way (kept for inspection) and say so."""
    aside = path.with_name(f"{path.name}.unusable")
    os.replace(path, aside)
    log(
        f"warning: checkpoint {path} is unusable ({type(exc).__name__}: {str(exc)[:200]}); "
        f"moved to {aside.name}, training starts over"
    )
    return aside


def train(
    train_data: MultiTrackDataset,
    val_data: MultiTrackDataset,
    config: TrainConfig,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    data_version: str = "",
    log: Callable[[str], None] = print,
    after_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train a MultiTrackTransformer on next-step prediction and return the best epoch's model.

    After every epoch the whole training state is written to `checkpoint` atomically. When
    that file holds the state of a run with the same settings and `data_version`, training
    picks up after its last epoch; on CPU the result equals an uninterrupted run.
    """
    started = time.perf_counter()
    if len(train_data) == 0 or len(val_data) == 0:
        raise TrainingError(
            f"nothing to train on: {len(train_data)} training and {len(val_data)} validation "
            "windows"
        )
    device = resolve_device(config.device)
    key = config.key(data_version)
    checkpoint_path = Path(checkpoint) if checkpoint else None
    state = load_checkpoint(checkpoint_path, log) if checkpoint_path else None
    if state is not None and state.get("key") != key:
        log("checkpoint is of other settings or data: starting over")
        state = None

    def fresh_start():
        torch.manual_seed(config.seed)
        model = MultiTrackTransformer(config.architecture()).to(device)
        shuffle = torch.Generator().manual_seed(config.seed)
        batches = BatchIterator(train_data, config.batch_size, shuffle=True, generator=shuffle)
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        scheduler = make_scheduler(optimizer, config, config.epochs * len(batches))
        return model, shuffle, batches, optimizer, scheduler

    with torch.random.fork_rng(devices=[]):
        model, shuffle, batches, optimizer, scheduler = fresh_start()
        val_batches = list(BatchIterator(val_data, 64, shuffle=False))
        class_weights = (
            class_weights_from(train_data.sequences, train_data.masks)
            if config.class_weights
            else None
        )
        history: list[EpochRecord] = []
        best_val, best_epoch, best_state, bad_epochs, step = math.inf, 0, None, 0, 0
        resumed_from = 0
        if state is not None:
            try:
                model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
                _set_rng_state(state["rng"], shuffle)
                history = [EpochRecord(**r) for r in state["history"]]
                best_val, best_epoch = state["best_val"], state["best_epoch"]
                best_state, bad_epochs = state["best_model"], state["bad_epochs"]
                step = state["step"]
                resumed_from = len(history)
                log(f"resuming after epoch {resumed_from} (step {step}) from {checkpoint_path}")
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
                set_aside(checkpoint_path, exc, log)
                model, shuffle, batches, optimizer, scheduler = fresh_start()
                history, best_state, step, resumed_from = [], None, 0, 0
                best_val, best_epoch, bad_epochs = math.inf, 0, 0

        forward = torch.compile(model) if config.compile else model
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )
        weights = config.loss_weights
        per_epoch_schedule = config.schedule in ("step", "plateau")
        stopped_early = bad_epochs >= config.patience and resumed_from > 0
        bad_in_a_row = 0
        for epoch in range(resumed_from + 1, config.epochs + 1):
            if stopped_early:
                break
            t0 = time.perf_counter()
            model.train()
            total, counted, skipped = 0.0, 0, 0
            for batch in batches:
                step += 1
                b = batch.to(device)
                with autocast:
                    outputs = forward(b.sequences, b.masks)
                loss, _ = next_step_loss(outputs, b.sequences, b.masks, weights, class_weights)
                if torch.isfinite(loss):
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    norm = nn.utils.clip_grad_norm_(
                        model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf
                    )
                    finite = bool(torch.isfinite(norm))
                else:
                    finite, norm = False, torch.tensor(math.nan)
                if not finite:
                    skipped += 1
                    bad_in_a_row += 1
                    optimizer.zero_grad(set_to_none=True)
                    what = "loss" if not torch.isfinite(loss) else "gradient norm"
                    log(f"epoch {epoch} step {step}: non-finite {what}; step skipped")
                    if bad_in_a_row >= config.max_bad_steps:
                        raise TrainingError(
                            f"epoch {epoch}, step {step}: {bad_in_a_row} non-finite losses or "
                            "gradients in a row; check the data and lower the learning rate"
                        )
                    continue
                bad_in_a_row = 0
                optimizer.step()
                if not per_epoch_schedule:
                    scheduler.step()
                total += float(loss.detach())
                counted += 1
            lr = optimizer.param_groups[0]["lr"]
            model.eval()
            metrics = evaluate(
                model_predictor(forward, device),
                val_batches,
                value_scale={},
                weights=weights,
                class_weights=class_weights,
            )
            val_loss = metrics["loss"]
            if config.schedule == "plateau":
                scheduler.step(val_loss)
            elif config.schedule == "step":
                scheduler.step()
            record = EpochRecord(
                epoch=epoch,
                train_loss=total / counted if counted else math.nan,
                val_loss=val_loss,
                learning_rate=lr,
                seconds=time.perf_counter() - t0,
                skipped_steps=skipped,
            )
            history.append(record)
            if val_loss < best_val:
                best_val, best_epoch, bad_epochs = val_loss, epoch, 0
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
            stopped_early = bad_epochs >= config.patience
            epoch_times = [r.seconds for r in history[resumed_from:]]
            left = (config.epochs - epoch) * sum(epoch_times) / len(epoch_times)
            log(
                f"epoch {epoch}/{config.epochs}  train {record.train_loss:.4f}  "
                f"val {val_loss:.4f}  lr {lr:.2e}  {record.seconds:.1f}s"
                + ("  (best)" if best_epoch == epoch else "")
                + (
                    f"  ~{_duration(left)} left"
                    if not stopped_early and epoch < config.epochs
                    else ""
                )
            )
            if checkpoint_path is not None:
                save_checkpoint(
                    checkpoint_path,
                    {
                        "key": key,
                        "config": config.as_dict(),
                        "epoch": epoch,
                        "step": step,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": _rng_state(shuffle),
                        "history": [asdict(r) for r in history],
                        "best_val": best_val,
                        "best_epoch": best_epoch,
                        "best_model": best_state,
                        "bad_epochs": bad_epochs,
                    },
                )
            if after_epoch is not None:
                after_epoch(record)
            if stopped_early:
                log(f"early stop: no better validation loss for {config.patience} epochs")

        if best_state is not None:
            model.load_state_dict(best_state)
        model.eval()
    return TrainResult(
        model=model.cpu(),
        config=config,
        history=history,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        device=str(device),
        seconds=time.perf_counter() - started,
        class_weights=class_weights,
    )


def save_checkpoint(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
