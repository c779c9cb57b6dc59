"""Pure torch: the multi-track transformer, its next-step objective, training, evaluation
against baselines, and model versions on disk."""

from xmlai_assets.model.data import Batch, BatchIterator, MultiTrackDataset, collate
from xmlai_assets.model.store import LoadedModel, NextStep, load_model, predict
from xmlai_assets.model.train import TrainConfig, TrainingError, TrainResult, train
from xmlai_assets.model.transformer import ModelConfig, MultiTrackTransformer

__all__ = [
    "Batch",
    "BatchIterator",
    "LoadedModel",
    "ModelConfig",
    "MultiTrackDataset",
    "MultiTrackTransformer",
    "NextStep",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "collate",
    "load_model",
    "predict",
    "train",
]
