"""A folder of artifacts on a local disk or on any fsspec URL (`s3://bucket/prefix`, ...).

Writes are whole or absent, whatever the store:
- `write_bytes`: locally a temporary file renamed into place; elsewhere one PUT of the complete
  object.
- `create`: create-only. Locally a temporary file hard-linked to its name, which fails when the
  name exists; elsewhere an exclusive open (`mode="xb"`, S3's `If-None-Match: *`). Two writers
  on two hosts that create the same name: one succeeds, the other gets `ArtifactExists`. It is
  the one primitive that version claims and the champion pointer are built on.
- `writing`: a temporary local file that becomes the artifact whole when the block ends (a
  rename, or one upload), for writers that want a path (Parquet, CSV, `.npz`).

`reading` gives a local file for readers that want a path: the artifact itself on a local
store, a temporary copy of it elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TypeVar

from xmlai_assets.atomic import atomic_path, atomic_write_bytes

# Reads of a remote store in flight at once in `read_each`: enough that round trips overlap
# instead of adding up, few enough for a client's connection pool.
REMOTE_READS_IN_FLIGHT = 16

T = TypeVar("T")


class ArtifactExists(FileExistsError):
    """A create-only write found the name taken."""


class ArtifactStore:
    """Named artifacts under one root. Names are relative POSIX paths (`v0001/config.json`)."""

    def __init__(self, location: str | os.PathLike[str]) -> None:
        text = os.fspath(location)
        if "://" in text and not text.startswith("file://"):
            import fsspec  # only for a store that is not a local folder

            self._fs, root = fsspec.core.url_to_fs(text)
            self._root = root.rstrip("/")
            self._local: Path | None = None
            protocol = self._fs.protocol
            scheme = protocol[0] if isinstance(protocol, tuple | list) else protocol
            self.url = f"{scheme}://{self._root.lstrip('/')}"
        else:
            self._local = Path(text.removeprefix("file://")).resolve()
            self._fs = None
            self._root = str(self._local)
            self.url = str(self._local)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    def location(self, name: str = "") -> str:
        """Where `name` lives, as a user would type it: a path, or a URL."""
        if self._local is not None:
            return str(self._path(name))
        return f"{self.url}/{_checked(name)}" if name else self.url

    def local_path(self, name: str = "") -> Path | None:
        """The file `name` is, for a local store; None elsewhere."""
        return None if self._local is None else self._path(name)

    def read_bytes(self, name: str, limit: int | None = None) -> bytes:
        """`name`'s bytes, or its first `limit` bytes."""
        if self._local is not None:
            with open(self._path(_checked(name)), "rb") as fh:
                return fh.read(-1 if limit is None else limit)
        return self._fs.cat_file(self._remote(name), start=0, end=limit)

    def read_each(self, names: Iterable[str]) -> dict[str, bytes | OSError]:
        """Each name's bytes, or the `OSError` reading it raised (`FileNotFoundError` where
        there is no such artifact). On a remote store `REMOTE_READS_IN_FLIGHT` reads are in
        flight at once: at 10,000 names on S3 their round trips overlap instead of adding up."""

        def read(name: str) -> bytes | OSError:
            try:
                return self.read_bytes(name)
            except OSError as exc:
                return exc

        return self._each(read, names)

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write `name` whole, replacing what was there."""
        if self._local is not None:
            atomic_write_bytes(self._path(_checked(name)), data)
        else:
            self._fs.pipe_file(self._remote(name), data)

    @contextlib.contextmanager
    def writing(self, name: str) -> Iterator[Path]:
        """A temporary local path to write `name` to. When the block ends without an error
        the file becomes `name`, whole (a rename, or one upload); after an error, nothing."""
        if self._local is not None:
            with atomic_path(self._path(_checked(name))) as tmp:
                yield tmp
            return
        remote = self._remote(name)
        with tempfile.TemporaryDirectory(prefix="xmlai-") as folder:
            tmp = Path(folder) / PurePosixPath(name).name
            yield tmp
            self._fs.put_file(str(tmp), remote)

    @contextlib.contextmanager
    def reading(self, name: str) -> Iterator[Path]:
        """A local file holding `name`: the artifact itself on a local store, else a temporary
        copy removed when the block ends. `FileNotFoundError` when there is no such artifact."""
        with self.reading_each([name]) as found:
            if isinstance(found[name], FileNotFoundError):
                raise found[name]
            yield found[name]

    @contextlib.contextmanager
    def reading_each(self, names: Iterable[str]) -> Iterator[dict[str, Path | FileNotFoundError]]:
        """`reading` of each name: a local file, or `FileNotFoundError` where there is no such
        artifact. On a remote store the copies are fetched `REMOTE_READS_IN_FLIGHT` at a time
        and removed when the block ends; any other error of a fetch is raised."""
        if self._local is not None:

            def found(name: str) -> Path | FileNotFoundError:
                path = self._path(name)
                return path if path.is_file() else FileNotFoundError(self.location(name))

            yield self._each(found, names)
            return
        with tempfile.TemporaryDirectory(prefix="xmlai-") as folder:

            def fetch(name: str) -> Path | FileNotFoundError:
                tmp = Path(tempfile.mkdtemp(dir=folder)) / PurePosixPath(name).name
                try:
                    self._fs.get_file(self._remote(name), str(tmp))
                except FileNotFoundError:
                    return FileNotFoundError(self.location(name))
                return tmp

            yield self._each(fetch, names)

    def _each(self, get: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
        """`get` of each name, once each, in order: in turn on a local store, with
        `REMOTE_READS_IN_FLIGHT` calls in flight on a remote one."""
        wanted = list(dict.fromkeys(_checked(name) for name in names))
        if self._local is not None or len(wanted) < 2:
            return {name: get(name) for name in wanted}
        with ThreadPoolExecutor(REMOTE_READS_IN_FLIGHT, thread_name_prefix="xmlai-read") as pool:
            return dict(zip(wanted, pool.map(get, wanted), strict=True))

    def sha256(self, name: str) -> str:
        """The sha256 of `name`'s bytes, read in blocks."""
        digest = hashlib.sha256()
        if self._local is not None:
            opener = partial(open, self._path(_checked(name)), "rb")
        else:
            opener = partial(self._fs.open, self._remote(name), "rb")
        with opener() as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def size(self, name: str) -> int:
        if self._local is not None:
            return self._path(_checked(name)).stat().st_size
        return int(self._fs.size(self._remote(name)))

    def create(self, name: str, data: bytes) -> None:
        """Write `name` only if it does not exist yet, else raise `ArtifactExists`."""
        if self._local is not None:
            target = self._path(_checked(name))
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:32]}.", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)
                os.link(tmp, target)  # atomic, and fails when the name is taken
            except FileExistsError:
                raise ArtifactExists(self.location(name)) from None
            finally:
                os.unlink(tmp)
            return
        try:
            with self._fs.open(self._remote(name), "xb") as fh:
                fh.write(data)
        except OSError as exc:
            if isinstance(exc, FileExistsError) or _refused_as_taken(exc):
                raise ArtifactExists(self.location(name)) from None
            raise

    def exists(self, name: str) -> bool:
        if self._local is not None:
            return self._path(name).is_file()
        return self._fs.isfile(self._remote(name))

    def list(self, folder: str = "") -> list[str]:
        """Names of the entries directly in `folder` (files and folders), sorted; [] when it
        does not exist."""
        if self._local is not None:
            path = self._path(folder) if folder else self._local
            try:
                return sorted(os.listdir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        remote = self._remote(folder) if folder else self._root
        try:
            found = self._fs.ls(remote, detail=False, refresh=True)
        except FileNotFoundError:
            return []
        names = {PurePosixPath(str(p).rstrip("/")).name for p in found}
        names.discard(PurePosixPath(remote).name if str(remote).strip("/") else "")
        return sorted(n for n in names if n)

    def delete(self, name: str) -> None:
        if self._local is not None:
            self._path(name).unlink(missing_ok=True)
        elif self._fs.exists(self._remote(name)):
            self._fs.rm_file(self._remote(name))

    def _path(self, name: str) -> Path:
        return self._local / _checked(name) if name else self._local

    def _remote(self, name: str) -> str:
        return f"{self._root}/{_checked(name)}"


def _checked(name: str) -> str:
    """`name` if it is a relative path that stays inside the store."""
    if any(part in ("", ".", "..") or "\\" in part for part in name.split("/")):
        raise ValueError(f"{name!r} is not an artifact name inside the store")
    return name


# What S3 answers a conditional PUT (`If-None-Match: *`) when the name is taken: 412, or 409
# when another conditional write of the name is in flight. s3fs passes both on as a plain OSError.
_TAKEN = ("PreconditionFailed", "ConditionalRequestConflict")


def _refused_as_taken(exc: BaseException) -> bool:
    """Whether an object store refused a create-only write because the name is taken."""
    seen = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if isinstance(response, dict) and response.get("Error", {}).get("Code") in _TAKEN:
            return True
        seen = seen.__cause__ or seen.__context__
    return False
