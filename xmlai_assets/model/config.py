"""Every setting of the model and of a training run, with its default and its meaning.

Torch-free, so that the Dagster code location can read the settings (the launchpad's config)
without importing torch; only a step that trains does.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Literal

from xmlai_assets.timeline.schema import CONTINUOUS_PARAMS, N_TRACKS, TRACK_PARAMS

MODEL_VERSION = "1"  # bump when the model, objective or evaluation changes

N_PARAMS = len(TRACK_PARAMS)
N_ACTIVE = 2
N_ASSETS = 10
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

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


Schedule = Literal["cosine", "step", "plateau", "none"]
Device = Literal["auto", "cpu", "cuda"]


def _doc(text: str) -> dict:
    return {"doc": text}


@dataclass(frozen=True)
class TrainConfig:
    """Every hyperparameter of a training run, with the defaults of the full model."""

    d_model: int = field(default=256, metadata=_doc("Width of the residual stream."))
    n_heads: int = field(default=8, metadata=_doc("Attention heads per layer."))
    n_layers: int = field(default=6, metadata=_doc("Encoder layers."))
    d_ff: int = field(default=1024, metadata=_doc("Width of each layer's feed-forward block."))
    dropout: float = field(default=0.1, metadata=_doc("Dropout in the encoder."))
    batch_size: int = field(default=16, metadata=_doc("Windows per optimizer step."))
    learning_rate: float = field(default=1e-4, metadata=_doc("Peak AdamW learning rate."))
    weight_decay: float = field(default=1e-5, metadata=_doc("AdamW weight decay."))
    grad_clip: float = field(default=1.0, metadata=_doc("Gradient norm clip; 0 turns it off."))
    schedule: Schedule = field(
        default="cosine",
        metadata=_doc("cosine (after linear warmup), step, plateau or none."),
    )
    warmup_fraction: float = field(
        default=0.05, metadata=_doc("Share of all steps spent warming up (cosine).")
    )
    step_epochs: int = field(default=10, metadata=_doc("step: epochs between decays."))
    step_gamma: float = field(default=0.5, metadata=_doc("step and plateau: decay factor."))
    plateau_patience: int = field(
        default=2, metadata=_doc("plateau: epochs without improvement before a decay.")
    )
    epochs: int = field(default=50, metadata=_doc("Most epochs to train."))
    patience: int = field(
        default=8, metadata=_doc("Early stopping: epochs without a better validation loss.")
    )
    loss_weights: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(HEADS, 1.0),
        metadata=_doc("Weight of each head's loss in the total (missing heads weigh 1)."),
    )
    class_weights: bool = field(
        default=False,
        metadata=_doc("Weigh active and asset classes by inverse training frequency."),
    )
    seed: int = field(default=0, metadata=_doc("Seeds initialization, dropout and shuffling."))
    device: Device = field(default="auto", metadata=_doc("auto: CUDA when present, else CPU."))
    compile: bool = field(default=False, metadata=_doc("torch.compile the model (opt-in)."))
    max_bad_steps: int = field(
        default=20,
        metadata=_doc("Non-finite losses or gradients in a row before training stops."),
    )

    def model_config(self) -> ModelConfig:
        return ModelConfig(
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_ff=self.d_ff,
            dropout=self.dropout,
        )

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**data)

    def key(self, data_version: str) -> str:
        """What a checkpoint must match to be resumed: these settings and these inputs."""
        text = json.dumps({"config": self.as_dict(), "data": data_version}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
