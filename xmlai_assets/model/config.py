"""Every setting of the model and of a training run, with its default and its meaning.

Torch-free, so that the Dagster code location can read the settings (the launchpad's config)
without importing torch; only a step that trains does.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Literal

import pydantic

from xmlai_assets.timeline.schema import (
    CONTINUOUS_PARAMS,
    N_ASSET_CLASSES,
    N_TRACKS,
    TRACK_PARAMS,
)

MODEL_VERSION = "6"  # bump when the model, objective or evaluation changes
# The columns of a scorecard, in order: the model, the champion before it (scored on the same
# windows), and the baselines (see model/evaluate.py).
SCORECARD = ("model", "champion", "fair_copy", "hazard", "persistence", "majority_mean")
# The baselines of the scorecard: a new version must beat each of them to become the champion.
BASELINES = tuple(name for name in SCORECARD if name not in ("model", "champion"))

N_PARAMS = len(TRACK_PARAMS)
N_ACTIVE = 2
N_ASSETS = N_ASSET_CLASSES
HEADS = ("active", "asset", *CONTINUOUS_PARAMS)


@dataclass(frozen=True)
class ModelConfig:
    d_model: int = 256
    n_heads: int = 8
    n_layers: int = 6
    d_ff: int = 1024
    dropout: float = 0.1
    n_tracks: int = N_TRACKS
    n_assets: int = N_ASSETS
    # "delta": each value head predicts the change from the current step. "gated": also a
    # move-or-hold gate per value (a held value is the current one exactly), with the last
    # step's change and a moved flag among the inputs. A version's config.json without it was
    # written before the gate: "delta".
    value_head: str = "delta"
    # "baselines": the heads correct the baselines of the training split (kept in the weights):
    # the hazard table's on/off chances, the fair copy's asset chances and a track's usual
    # values where it comes on. Without it in config.json, a version was written before: "none".
    prior: str = "none"

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


Schedule = Literal["cosine", "step", "plateau", "none"]
Device = Literal["auto", "cpu", "cuda"]


class TrainConfig(pydantic.BaseModel):
    """Every hyperparameter of a training run, with the defaults of the full model.

    The one statement of the settings: the launchpad's config class is this class (see
    `defs/train/assets.py`), and `configs/train_full.yaml` spells out these defaults.
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")

    d_model: int = pydantic.Field(default=256, description="Width of the residual stream.")
    n_heads: int = pydantic.Field(default=8, description="Attention heads per layer.")
    n_layers: int = pydantic.Field(default=6, description="Encoder layers.")
    d_ff: int = pydantic.Field(
        default=1024, description="Width of each layer's feed-forward block."
    )
    dropout: float = pydantic.Field(default=0.1, description="Dropout in the encoder.")
    value_head: Literal["gated", "delta"] = pydantic.Field(
        default="gated",
        description="gated: each continuous value holds exactly still or moves by a predicted "
        "change, by a gate trained on whether it moved, with the last step's change among the "
        "inputs; delta: a predicted change, always.",
    )
    prior: Literal["baselines", "none"] = pydantic.Field(
        default="baselines",
        description="baselines: the model starts from the baselines of the training split and "
        "its heads learn corrections: the hazard table's on/off chances, the fair copy's asset "
        "chances and a track's usual values where it comes on (with the gate, exactly those "
        "unless it moves them); none: the heads alone.",
    )
    batch_size: int = pydantic.Field(default=16, description="Windows per optimizer step.")
    learning_rate: float = pydantic.Field(default=1e-4, description="Peak AdamW learning rate.")
    weight_decay: float = pydantic.Field(default=1e-5, description="AdamW weight decay.")
    grad_clip: float = pydantic.Field(
        default=1.0, description="Gradient norm clip; 0 turns it off."
    )
    schedule: Schedule = pydantic.Field(
        default="cosine",
        description="cosine (after linear warmup), step, plateau or none.",
    )
    warmup_fraction: float = pydantic.Field(
        default=0.05, description="Share of all steps spent warming up (cosine)."
    )
    step_epochs: int = pydantic.Field(default=10, description="step: epochs between decays.")
    step_gamma: float = pydantic.Field(default=0.5, description="step and plateau: decay factor.")
    plateau_patience: int = pydantic.Field(
        default=2, description="plateau: epochs without improvement before a decay."
    )
    epochs: int = pydantic.Field(default=50, description="Most epochs to train.")
    patience: int = pydantic.Field(
        default=8, description="Early stopping: epochs without a better validation loss."
    )
    loss_weights: dict[str, float] = pydantic.Field(
        default_factory=lambda: dict.fromkeys(HEADS, 1.0),
        description="Weight of each head's loss in the total (missing heads weigh 1).",
    )
    class_weights: bool = pydantic.Field(
        default=False,
        description="Weigh active and asset classes by inverse training frequency.",
    )
    seed: int = pydantic.Field(
        default=0, description="Seeds initialization, dropout and shuffling."
    )
    device: Device = pydantic.Field(
        default="auto", description="auto: CUDA when present, else CPU."
    )
    compile: bool = pydantic.Field(
        default=False,
        description="On CUDA: torch.compile the model for training (batches then all have "
        "batch_size windows). The CPU runs it eager.",
    )
    checkpoint_minutes: float = pydantic.Field(
        default=1.0,
        ge=0.0,
        description="Minutes of training between checkpoints, written after the epoch that "
        "passes them (0: after every epoch); a crash loses about this much.",
    )
    guard_every: int = pydantic.Field(
        default=50,
        description="On CUDA: steps between reads of the loss and the non-finite flag "
        "(each read waits for the device).",
    )
    max_bad_steps: int = pydantic.Field(
        default=20,
        description="Non-finite losses or gradients in a row before training stops.",
    )

    def architecture(self) -> ModelConfig:
        return ModelConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_ff=self.d_ff,
            dropout=self.dropout,
            value_head=self.value_head,
            prior=self.prior,
        )

    def scaled_to(self, batch_size: int, lr_factor: float = 1.0) -> TrainConfig:
        """These settings at another batch size, by the square-root rule for Adam: the
        learning rate, the epochs and the patience grow with sqrt(batch_size / self.batch_size),
        so a run makes a comparable number of updates at a comparable noise scale; the warmup
        stays the same share of the run. `lr_factor` tunes the rate on top of the rule."""
        k = math.sqrt(batch_size / self.batch_size)
        return self.model_copy(
            update={
                "batch_size": batch_size,
                "learning_rate": float(f"{self.learning_rate * k * lr_factor:.2g}"),
                "epochs": math.ceil(self.epochs * k),
                "patience": math.ceil(self.patience * k),
            }
        )

    def as_dict(self) -> dict:
        return self.model_dump()

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        unknown = sorted(set(data) - set(cls.model_fields))
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**data)

    def key(self, data_version: str) -> str:
        """What a checkpoint must match to be resumed: these settings and these inputs."""
        text = json.dumps({"config": self.as_dict(), "data": data_version}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
