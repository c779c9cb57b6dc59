"""Pure preprocessing: split by video, scalers fitted on the training split, padded windows."""

from xmlai_assets.features.frames import DataFileError, TrackFrames, load_track_frames
from xmlai_assets.features.scalers import denormalize, fit_scalers, load_scalers, normalize
from xmlai_assets.features.split import VideoSplit, split_videos, val_count
from xmlai_assets.features.windows import Sequences, cut_windows, read_npz, window_starts

__all__ = [
    "DataFileError",
    "Sequences",
    "TrackFrames",
    "VideoSplit",
    "cut_windows",
    "denormalize",
    "fit_scalers",
    "load_scalers",
    "load_track_frames",
    "normalize",
    "read_npz",
    "split_videos",
    "val_count",
    "window_starts",
]
