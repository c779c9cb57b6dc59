"""Atomic file writes: readers see the old file or the complete new one, never a torn one."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` in one rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A short name whatever the target's (a long one would pass the 255-byte limit), holding
    # the writer's process id so that `remove_stale_temp_files` can tell a dead writer's file.
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name[:32]}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp creates 0600; give artifacts ordinary permissions
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def remove_stale_temp_files(
    folder: str | os.PathLike[str], *, min_age_s: float = 60.0, recursive: bool = True
) -> list[Path]:
    """Remove the temporary files under `folder` whose writer (by process id, on this host) is
    no longer running, as a writer killed before its rename leaves them; return them."""
    removed = []
    now = time.time()
    folder = Path(folder)
    found = folder.rglob(f".*{TEMP_SUFFIX}") if recursive else folder.glob(f".*{TEMP_SUFFIX}")
    for tmp in found:
        try:
            pid = int(tmp.name[: -len(TEMP_SUFFIX)].split(".")[-2])
            if now - tmp.lstat().st_mtime < min_age_s or process_alive(pid):
                continue
            tmp.unlink()
            removed.append(tmp)
        except (ValueError, IndexError, OSError):
            continue  # not one of ours, or gone already
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process of this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
