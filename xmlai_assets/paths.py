"""Where the pipeline reads and writes: the one place for paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"
TIMELINE_SUFFIXES = (".xml",)


@dataclass(frozen=True)
class DataLayout:
    """The files of one data folder: inputs under `timelines/`, artifacts beside them."""

    data_dir: Path
    timelines_dir: Path

    @classmethod
    def from_env(cls) -> DataLayout:
        data_dir = Path(os.environ.get("XMLAI_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
        timelines = os.environ.get("XMLAI_TIMELINES_DIR") or data_dir / "timelines"
        return cls(data_dir, Path(timelines).resolve())

    @classmethod
    def at(
        cls, data_dir: str | os.PathLike[str], timelines_dir: str | os.PathLike[str] | None = None
    ) -> DataLayout:
        data_dir = Path(data_dir).resolve()
        return cls(data_dir, Path(timelines_dir or data_dir / "timelines").resolve())

    @property
    def frames_dir(self) -> Path:
        return self.data_dir / "frames"

    def frames_file(self, timeline_file: str) -> Path:
        return self.frames_dir / f"{timeline_file}.parquet"

    def frames_report(self, timeline_file: str) -> Path:
        return self.frames_dir / f"{timeline_file}.json"

    @property
    def master_csv(self) -> Path:
        return self.data_dir / "master_training_data.csv"

    @property
    def train_csv(self) -> Path:
        return self.data_dir / "train_data.csv"

    @property
    def val_csv(self) -> Path:
        return self.data_dir / "val_data.csv"

    @property
    def scalers_pkl(self) -> Path:
        return self.data_dir / "scalers.pkl"

    @property
    def scalers_json(self) -> Path:
        return self.data_dir / "scalers.json"

    @property
    def train_sequences(self) -> Path:
        return self.data_dir / "train_sequences.npz"

    @property
    def val_sequences(self) -> Path:
        return self.data_dir / "val_sequences.npz"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    def lock_file(self, artifact: str) -> Path:
        """The lock that writers of `artifact` hold, so two runs never write it at once."""
        return self.data_dir / ".locks" / f"{artifact}.lock"

    @property
    def train_checkpoint(self) -> Path:
        return self.data_dir / "checkpoints" / "trained_model.pt"


def list_timeline_files(folder: str | os.PathLike[str]) -> list[str]:
    """Names of the timeline exports directly in `folder`, sorted (hidden files skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.suffix.lower() in TIMELINE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
