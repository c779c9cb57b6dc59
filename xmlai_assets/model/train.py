"""The training loop: AdamW, clipping, a learning-rate schedule, early stopping, checkpoints
that resume exactly, and a guard against non-finite steps. No framework: `train` reads top to
bottom, one epoch at a time; `learning_rate` is the schedule, `TrainState` the checkpoint."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from xmlai_assets.atomic import atomic_path
from xmlai_assets.model.config import TrainConfig
from xmlai_assets.model.data import Batch, BatchIterator, MultiTrackDataset
from xmlai_assets.model.evaluate import Priors, validation_loss
from xmlai_assets.model.loss import class_weights_from, training_loss
from xmlai_assets.model.transformer import MultiTrackTransformer

VALIDATION_BATCH = 256  # windows per validation batch: few batches, few waits on a GPU


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


def learning_rate(config: TrainConfig, update: int, total_updates: int, decayed: float) -> float:
    """The learning rate for optimizer update `update` (0-based), in the manner of nanoGPT's
    `get_lr`: cosine warms up linearly, then falls to 0 over the run; step and plateau use the
    rate their decays have reached (`decayed`, moved by `decay_after_epoch`); none keeps it."""
    if config.schedule == "cosine":
        warmup = max(1, round(config.warmup_fraction * total_updates))
        if update < warmup:
            factor = (update + 1) / warmup
        else:
            progress = min(1.0, (update - warmup) / max(1, total_updates - warmup))
            factor = 0.5 * (1.0 + math.cos(math.pi * progress))
        return config.learning_rate * factor
    if config.schedule in ("step", "plateau"):
        return decayed
    if config.schedule == "none":
        return config.learning_rate
    raise ValueError(f"unknown schedule {config.schedule!r}")


# ReduceLROnPlateau's defaults: a relative improvement of 1e-4 counts, no cooldown
_PLATEAU_THRESHOLD = 1e-4
_PLATEAU_EPS = 1e-8


def decay_after_epoch(config: TrainConfig, state: TrainState, val_loss: float) -> None:
    """Move `state.decayed` at the end of an epoch: every `step_epochs` epochs (step), or after
    `plateau_patience` epochs without a better validation loss (plateau)."""
    if config.schedule == "step" and state.epoch % config.step_epochs == 0:
        state.decayed = state.decayed * config.step_gamma
    elif config.schedule == "plateau":
        if val_loss < state.plateau_best * (1.0 - _PLATEAU_THRESHOLD):
            state.plateau_best, state.plateau_bad = val_loss, 0
        else:
            state.plateau_bad += 1
        if state.plateau_bad > config.plateau_patience:
            lowered = max(state.decayed * config.step_gamma, 0.0)
            if state.decayed - lowered > _PLATEAU_EPS:
                state.decayed = lowered
            state.plateau_bad = 0


@dataclass
class TrainState:
    """Where a run stands after an epoch: with the model, optimizer and random states, what a
    checkpoint holds to continue exactly."""

    decayed: float  # the learning rate step and plateau decays have reached
    epoch: int = 0
    step: int = 0  # batches seen, skipped ones included
    updates: int = 0  # optimizer updates made (the schedule counts these)
    history: list[EpochRecord] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_model: dict[str, torch.Tensor] | None = None
    bad_epochs: int = 0  # epochs since the best validation loss (early stopping)
    plateau_best: float = math.inf
    plateau_bad: int = 0

    def as_dict(self) -> dict:
        out = asdict(self)
        out["best_model"] = self.best_model  # tensors as they are, not deep-copied by asdict
        return out

    @classmethod
    def from_dict(cls, data: dict) -> TrainState:
        data = dict(data)
        data["history"] = [EpochRecord(**r) for r in data["history"]]
        return cls(**data)


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
    deferred_guard: bool | None = None,
    priors: Priors | None = None,
    on_checkpoint: Callable[[Path], None] | None = None,
) -> TrainResult:
    """Train a MultiTrackTransformer on next-step prediction and return the best epoch's model.

    On CUDA (or with `deferred_guard=True`) the loop never waits for the device: the windows
    live there and batches are indexed there, AdamW is fused, a non-finite step is skipped on
    the device (the optimizer's `found_inf`, as with a gradient scaler), and the loss and the
    non-finite flag are read back every `guard_every` steps and at the epoch's end. There the
    schedule counts steps, skipped ones included. On the CPU each step is checked at once and
    a run repeats and resumes exactly.

    After the epoch that ends `checkpoint_minutes` after the last checkpoint, the whole
    training state is written to `checkpoint` atomically. When that file holds the state of a
    run with the same settings and `data_version`, training picks up after its epoch; on CPU
    the result equals an uninterrupted run. `on_checkpoint` is called with the file after each
    write (to keep a copy elsewhere).

    A model with the prior starts from `priors` (the training split's baselines; counted here
    when not given).
    """
    started = time.perf_counter()
    if len(train_data) == 0 or len(val_data) == 0:
        raise TrainingError(
            f"nothing to train on: {len(train_data)} training and {len(val_data)} validation "
            "windows"
        )
    device = resolve_device(config.device)
    deferred = device.type == "cuda" if deferred_guard is None else deferred_guard
    if device.type != "cpu":  # the windows live on the accelerator; batches are cut there
        train_data, val_data = train_data.to(device), val_data.to(device)
    key = config.key(data_version)
    checkpoint_path = Path(checkpoint) if checkpoint else None
    saved = load_checkpoint(checkpoint_path, log) if checkpoint_path else None
    if saved is not None and saved.get("key") != key:
        log("checkpoint is of other settings or data: starting over")
        saved = None

    with torch.random.fork_rng(devices=[]):
        run = _Run(config, device, train_data, val_data, deferred, log, priors)
        if saved is not None:
            try:
                run.resume(saved)
                log(
                    f"resuming after epoch {run.state.epoch} (step {run.state.step}) from "
                    f"{checkpoint_path}"
                )
            except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as exc:
                set_aside(checkpoint_path, exc, log)
                run = _Run(config, device, train_data, val_data, deferred, log, priors)
        state = run.state
        resumed_from = state.epoch
        stopped_early = state.bad_epochs >= config.patience and resumed_from > 0
        saved_at = time.perf_counter()
        while state.epoch < config.epochs and not stopped_early:
            t0 = time.perf_counter()
            train_loss, skipped = run.train_epoch_on_device() if deferred else run.train_epoch()
            state.epoch += 1
            lr = run.optimizer.param_groups[0]["lr"]
            val_loss = run.validation_loss()
            decay_after_epoch(config, state, val_loss)
            run.set_learning_rate()
            record = EpochRecord(
                state.epoch, train_loss, val_loss, lr, time.perf_counter() - t0, skipped
            )
            state.history.append(record)
            if val_loss < state.best_val:
                state.best_val, state.best_epoch, state.bad_epochs = val_loss, state.epoch, 0
                run.keep_as_best()
            else:
                state.bad_epochs += 1
            stopped_early = state.bad_epochs >= config.patience
            log(_epoch_line(config, state, record, resumed_from, stopped_early))
            since_saved = time.perf_counter() - saved_at
            due = since_saved >= 60.0 * config.checkpoint_minutes
            if checkpoint_path is not None and due and run.rank == 0:
                save_checkpoint(checkpoint_path, {"key": key, **run.checkpoint()})
                if on_checkpoint is not None:
                    on_checkpoint(checkpoint_path)
                saved_at = time.perf_counter()
            if after_epoch is not None:
                after_epoch(record)
            if stopped_early:
                log(f"early stop: no better validation loss for {config.patience} epochs")

        model = run.best_model()
    return TrainResult(
        model=model,
        config=config,
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_loss=state.best_val,
        stopped_early=stopped_early,
        resumed_from_epoch=resumed_from,
        device=str(device),
        seconds=time.perf_counter() - started,
        class_weights=run.class_weights,
    )


class _Run:
    """What one training run works with, and its steps: an epoch on the CPU or on the device,
    the validation loss, the learning rate, the best weights and the checkpoint."""

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        train_data: MultiTrackDataset,
        val_data: MultiTrackDataset,
        deferred: bool,
        log: Callable[[str], None],
        priors: Priors | None = None,
    ):
        self.config, self.device, self.log = config, device, log
        # a distributed run (torchrun): each rank takes its share of every batch
        self.rank, self.ranks = distributed_rank()
        compiled = config.compile and device.type == "cuda" and self.ranks == 1
        torch.manual_seed(config.seed)
        self.model = MultiTrackTransformer(config.architecture())
        if self.model.prior:
            if priors is None:
                priors = Priors.from_training(BatchIterator(train_data, 256, shuffle=False))
            self.model.set_prior(
                priors.hazard,
                priors.track_asset_stay,
                priors.asset_freq,
                priors.value_mean,
                priors.move_chance,
            )
        self.model = self.model.to(device)
        self.forward = torch.compile(self.model) if compiled else self.model
        if self.ranks > 1:
            from torch.nn.parallel import DistributedDataParallel

            self.forward = DistributedDataParallel(self.model)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.batches = BatchIterator(
            train_data,
            config.batch_size,
            shuffle=True,
            generator=self.shuffle,
            drop_last=compiled,  # one batch shape: a compiled model is not compiled again
        )
        self.val_batches = list(BatchIterator(val_data, VALIDATION_BATCH, shuffle=False))
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(),
            lr=config.learning_rate,
            weight_decay=config.weight_decay,
            fused=deferred,
        )
        self.state = TrainState(decayed=config.learning_rate)
        self.total_updates = config.epochs * len(self.batches)
        self.class_weights = (
            class_weights_from(train_data.sequences, train_data.masks)
            if config.class_weights
            else None
        )
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if device.type == "cuda"
            else torch.autocast("cpu", enabled=False)
        )
        self.set_learning_rate()

    def resume(self, saved: dict) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        _set_rng_state(saved["rng"], self.shuffle)
        self.state = TrainState.from_dict(saved["state"])
        self.set_learning_rate()

    def checkpoint(self) -> dict:
        return {
            "config": self.config.as_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": _rng_state(self.shuffle),
            "state": self.state.as_dict(),
        }

    def set_learning_rate(self) -> None:
        state = self.state
        lr = learning_rate(self.config, state.updates, self.total_updates, state.decayed)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def loss(self, batch: Batch) -> torch.Tensor:
        """This rank's loss on its share of `batch` (the whole batch in one process)."""
        present = True
        if self.ranks > 1:
            rows = torch.arange(self.rank, len(batch.masks), self.ranks, device=self.device)
            present = len(rows) > 0
            rows = rows if present else torch.zeros(1, dtype=torch.long, device=self.device)
            batch = Batch(batch.sequences[rows], batch.masks[rows])
        with self.autocast:
            outputs = self.forward(batch.sequences, batch.masks)
        return training_loss(
            outputs,
            batch.sequences,
            batch.masks,
            self.config.loss_weights,
            self.class_weights,
            sum_over_ranks=_sum_over_ranks if self.ranks > 1 else None,
            present=present,
        )

    def batch_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The whole batch's loss from this rank's share: the sum over the ranks."""
        return _sum_over_ranks(loss.detach()) if self.ranks > 1 else loss.detach()

    def train_epoch(self) -> tuple[float, int]:
        """(mean training loss, steps skipped for a non-finite loss or gradient)."""
        config, state, optimizer = self.config, self.state, self.optimizer
        self.model.train()
        total, counted, skipped, bad_in_a_row = 0.0, 0, 0, 0
        for batch in self.batches:
            state.step += 1
            loss = self.loss(batch.to(self.device))
            whole = self.batch_loss(loss)
            problem = _backward(loss, whole, self.ranks, self.model, optimizer, config.grad_clip)
            if problem is not None:
                skipped += 1
                bad_in_a_row += 1
                self.log(
                    f"epoch {state.epoch + 1} step {state.step}: non-finite {problem}; step skipped"
                )
                if bad_in_a_row >= config.max_bad_steps:
                    raise TrainingError(
                        f"epoch {state.epoch + 1}, step {state.step}: {bad_in_a_row} "
                        "non-finite losses or gradients in a row; check the data and lower "
                        "the learning rate"
                    )
                continue
            bad_in_a_row = 0
            optimizer.step()
            state.updates += 1
            self.set_learning_rate()
            total += float(whole)
            counted += 1
        return (total / counted if counted else math.nan), skipped

    def train_epoch_on_device(self) -> tuple[float, int]:
        """`train_epoch` without waiting for the device at every step: each step's loss and
        non-finite flag go to a buffer on the device, read back every `guard_every` steps and
        at the epoch's end."""
        config, state, optimizer = self.config, self.state, self.optimizer
        self.model.train()
        losses = torch.zeros(len(self.batches), device=self.device)
        bad_steps = torch.zeros(len(self.batches), device=self.device)
        first_step = state.step + 1
        clip = config.grad_clip if config.grad_clip > 0 else math.inf
        optimizer.grad_scale = None
        for i, batch in enumerate(self.batches):
            state.step += 1
            loss = self.loss(batch)
            whole = self.batch_loss(loss)
            optimizer.zero_grad(set_to_none=True)
            # data parallel averages the ranks' gradients; their sum is the batch's
            (loss * self.ranks).backward()
            norm = nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            bad = (~torch.isfinite(whole + norm)).float()
            optimizer.found_inf = bad  # the fused update is skipped where this is 1
            optimizer.step()
            losses[i] = whole
            bad_steps[i] = bad
            state.updates += 1
            self.set_learning_rate()
            if state.step % config.guard_every == 0:
                _stop_on_a_run_of_bad_steps(config, state, bad_steps[: i + 1], first_step)
        del optimizer.found_inf, optimizer.grad_scale
        bad = _stop_on_a_run_of_bad_steps(config, state, bad_steps, first_step)
        good = [float(x) for x, b in zip(losses.tolist(), bad, strict=True) if not b]
        if len(good) < len(bad):
            self.log(f"epoch {state.epoch + 1}: {len(bad) - len(good)} steps skipped (non-finite)")
        return (sum(good) / len(good) if good else math.nan), len(bad) - len(good)

    def validation_loss(self) -> float:
        self.model.eval()  # the plain model: a compiled one would compile again for eval
        return validation_loss(
            self.model,
            self.val_batches,
            weights=self.config.loss_weights,
            class_weights=self.class_weights,
        )

    def keep_as_best(self) -> None:
        # kept where the model is: a copy to the host would wait for the device
        self.state.best_model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def best_model(self) -> MultiTrackTransformer:
        if self.state.best_model is not None:
            self.model.load_state_dict(self.state.best_model)
        return self.model.eval().cpu()


def _backward(
    loss: torch.Tensor,
    whole: torch.Tensor,
    ranks: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    grad_clip: float,
) -> str | None:
    """Gradients of the batch's loss (`whole`; this rank's share is `loss`), clipped; what was
    non-finite (the step is then skipped, on every rank alike), or None."""
    if not torch.isfinite(whole):
        optimizer.zero_grad(set_to_none=True)
        return "loss"
    optimizer.zero_grad(set_to_none=True)
    (loss * ranks).backward()  # data parallel averages the ranks' gradients; the sum is wanted
    norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    if not torch.isfinite(norm):
        optimizer.zero_grad(set_to_none=True)
        return "gradient norm"
    return None


def distributed_rank() -> tuple[int, int]:
    """(this process's rank, the number of ranks) of a distributed run; (0, 1) otherwise."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    summed = tensor.clone()
    torch.distributed.all_reduce(summed)
    return summed


def _stop_on_a_run_of_bad_steps(
    config: TrainConfig, state: TrainState, bad_steps: torch.Tensor, first_step: int
) -> list[bool]:
    """Read the epoch's non-finite flags so far (one wait for the device; `first_step` is the
    first one's step number) and stop where `max_bad_steps` of them came in a row."""
    bad = [b > 0 for b in bad_steps.tolist()]
    streak = 0
    for i, b in enumerate(bad):
        streak = streak + 1 if b else 0
        if streak >= config.max_bad_steps:
            raise TrainingError(
                f"epoch {state.epoch + 1}, step {first_step + i}: {streak} non-finite losses "
                "or gradients in a row; check the data and lower the learning rate"
            )
    return bad


def _epoch_line(
    config: TrainConfig, state: TrainState, record: EpochRecord, resumed_from: int, stopped: bool
) -> str:
    seconds = [r.seconds for r in state.history[resumed_from:]]
    left = (config.epochs - record.epoch) * sum(seconds) / len(seconds)
    return (
        f"epoch {record.epoch}/{config.epochs}  train {record.train_loss:.4f}  "
        f"val {record.val_loss:.4f}  lr {record.learning_rate:.2e}  {record.seconds:.1f}s"
        + ("  (best)" if state.best_epoch == record.epoch else "")
        + (f"  ~{_duration(left)} left" if not stopped and record.epoch < config.epochs else "")
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
