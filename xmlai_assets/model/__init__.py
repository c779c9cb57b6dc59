"""Pure torch: the multi-track transformer, its next-step objective, training, evaluation
against baselines, and model versions on disk.

Names are imported on first use, so that `xmlai_assets.model.config` (the settings) can be
read without importing torch.
"""

import importlib

_EXPORTS = {
    "Batch": "data",
    "BatchIterator": "data",
    "MultiTrackDataset": "data",
    "collate": "data",
    "LoadedModel": "store",
    "NextStep": "store",
    "load_model": "store",
    "predict": "store",
    "TrainingError": "train",
    "TrainResult": "train",
    "train": "train",
    "TrainConfig": "config",
    "ModelConfig": "config",
    "MultiTrackTransformer": "transformer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
