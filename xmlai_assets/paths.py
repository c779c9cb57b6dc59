"""Where the pipeline reads and writes: the one place for paths."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from xmlai_assets.artifacts import ArtifactStore

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
DEFAULT_DAGSTER_HOME = PROJECT_ROOT / ".dagster_home"
TIMELINE_SUFFIXES = (".xml",)


# The splits, in the order their files are written: the model learns from `train`, stops early
# and is promoted on `val`, and its scorecard is reported on `test`, which nothing chose on.
SPLITS = ("train", "val", "test")

# Artifact names inside the data store, the one rule for them. Each asset's files:
MASTER_CSV = "master_training_data.csv"
SCALERS_JSON = "scalers.json"  # what the pipeline reads back
SCALERS_PKL = "scalers.pkl"  # the fitted objects, for tools; never loaded


def split_csv(split: str) -> str:
    """The rows of one split (train, val or test)."""
    return f"{split}_data.csv"


def sequences_npz(split: str) -> str:
    """The windows of one split."""
    return f"{split}_sequences.npz"


def frames_parquet(key: str) -> str:
    """The frames table of one timeline file (a partition of `timeline_frames`)."""
    return f"frames/{artifact_stem(key)}.parquet"


def frames_report(key: str) -> str:
    """The report of one timeline file's last parse."""
    return f"frames/{artifact_stem(key)}.json"


# asset key → the artifacts it writes, the first being the one its data version hashes
ARTIFACTS: dict[str, tuple[str, ...]] = {
    "master_training_data": (MASTER_CSV,),
    **{f"{split}_data": (split_csv(split),) for split in SPLITS},
    "scalers": (SCALERS_JSON, SCALERS_PKL),
    **{f"{split}_sequences": (sequences_npz(split),) for split in SPLITS},
}


# The training state between epochs, named as an artifact: the training host writes it to its
# data folder, and to the artifact store where that is remote (a pod's disk goes with the pod).
TRAIN_CHECKPOINT = "checkpoints/trained_model.pt"


@dataclass(frozen=True)
class DataLayout:
    """Where the pipeline reads and writes: timeline exports in a local folder, artifacts in a
    store (by default the data folder itself), model versions in a store of their own."""

    data_dir: Path  # local: the default store, and the training checkpoint
    timelines_dir: Path
    # where artifacts live: a folder or an fsspec URL (`s3://bucket/xmlai`); None is the data
    # folder
    data_url: str | None = None
    # where model versions live; None is `models/` in the artifact store
    models_url: str | None = None

    @classmethod
    def from_env(cls) -> DataLayout:
        data_dir = Path(os.environ.get("XMLAI_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
        timelines = os.environ.get("XMLAI_TIMELINES_DIR") or data_dir / "timelines"
        return cls(
            data_dir,
            Path(timelines).resolve(),
            os.environ.get("XMLAI_DATA_URL") or None,
            os.environ.get("XMLAI_MODELS_URL") or None,
        )

    @classmethod
    def at(
        cls,
        data_dir: str | os.PathLike[str],
        timelines_dir: str | os.PathLike[str] | None = None,
        models_url: str | None = None,
        data_url: str | None = None,
    ) -> DataLayout:
        data_dir = Path(data_dir).resolve()
        return cls(
            data_dir, Path(timelines_dir or data_dir / "timelines").resolve(), data_url, models_url
        )

    def timeline_file(self, key: str) -> Path:
        """The timeline export a partition key names, or `UnsafeTimelineKey`.

        Every read of an input goes through here: the key must be a plain file name (see
        `check_timeline_key`) of a regular file directly in the timelines folder. A symlink is
        refused, even one that points inside the folder: what a link names can change between
        this check and the read.
        """
        check_timeline_key(key)
        path = self.timelines_dir / key
        try:
            problem = _not_a_regular_file(path.lstat().st_mode)
        except OSError as exc:
            raise UnsafeTimelineKey(key, f"no such file in {self.timelines_dir}") from exc
        if problem:
            raise UnsafeTimelineKey(key, problem)
        return path

    @property
    def artifacts(self) -> ArtifactStore:
        """The store of every artifact from the frames to the sequences."""
        return ArtifactStore(self.data_url or self.data_dir)

    @property
    def models(self) -> ArtifactStore:
        """The model versions' store."""
        if self.models_url:
            return ArtifactStore(self.models_url)
        return ArtifactStore(f"{self.artifacts.location('models')}")

    def local(self, name: str) -> Path:
        """The local file of artifact `name`, for a store on a local disk (tools and tests);
        `ValueError` for a store elsewhere, which has no local files."""
        path = self.artifacts.local_path(name)
        if path is None:
            raise ValueError(f"{self.artifacts.url} is not on a local disk")
        return path

    @property
    def train_checkpoint(self) -> Path:
        """Scratch space of the training host: always local. Where the artifacts are remote, a
        copy of it is kept there too, as the artifact `TRAIN_CHECKPOINT`."""
        return self.data_dir / TRAIN_CHECKPOINT


class UnsafeTimelineKey(ValueError):
    """A partition key that does not name a timeline file in the watched folder."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key!r}: {reason}")


def check_timeline_key(key: str) -> None:
    """Raise `UnsafeTimelineKey` unless `key` is a plain timeline file name: no separators,
    not `.` or `..`, not hidden, no control characters, at most 255 bytes, ending in `.xml`."""
    if not isinstance(key, str) or not key:
        raise UnsafeTimelineKey(str(key), "is empty")
    if "/" in key or "\\" in key or key in (".", ".."):
        raise UnsafeTimelineKey(key, "is a path, not a file name in the timelines folder")
    if key.startswith("."):
        raise UnsafeTimelineKey(key, "is a hidden file")
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or "..." in key:
        raise UnsafeTimelineKey(key, "holds control characters or '...', which Dagster refuses")
    if len(key.encode("utf-8", "surrogateescape")) > 255:
        raise UnsafeTimelineKey(key, "is longer than 255 bytes")
    if not key.lower().endswith(TIMELINE_SUFFIXES):
        raise UnsafeTimelineKey(key, f"does not end in {' or '.join(TIMELINE_SUFFIXES)}")


def artifact_stem(key: str) -> str:
    """A short, unique, filesystem-safe name for the artifacts of one timeline file: readable
    characters of its name, then a digest of the whole name (so `x.xml` and `x.XML` never share
    one, and no name is too long for a temporary file beside it)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:40].strip("._") or "timeline"
    return f"{readable}-{hashlib.sha256(key.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def _not_a_regular_file(mode: int) -> str | None:
    """Why an entry of this mode (from lstat) is no timeline file, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "is a symbolic link; links are not followed"
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return f"is not a regular file ({kind})"
    return "is not a regular file"


def scan_timeline_folder(folder: str | os.PathLike[str]) -> tuple[list[str], dict[str, str]]:
    """(the names of the timeline exports directly in `folder` that can be partition keys,
    sorted; {name: reason} for the `.xml` entries that cannot). A key is a regular file (not a
    link) whose name `check_timeline_key` accepts."""
    folder = Path(folder)
    names, skipped = [], {}
    if not folder.is_dir():
        return names, skipped
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.lower().endswith(TIMELINE_SUFFIXES) or entry.name.startswith("."):
                continue
            try:
                check_timeline_key(entry.name)
                mode = entry.stat(follow_symlinks=False).st_mode
            except UnsafeTimelineKey as exc:
                skipped[entry.name] = exc.reason
                continue
            except OSError:
                continue  # gone since the listing
            problem = _not_a_regular_file(mode)
            if problem:
                skipped[entry.name] = problem
            else:
                names.append(entry.name)
    return sorted(names), skipped


def list_timeline_files(folder: str | os.PathLike[str]) -> list[str]:
    """The names `scan_timeline_folder` accepts."""
    return scan_timeline_folder(folder)[0]
