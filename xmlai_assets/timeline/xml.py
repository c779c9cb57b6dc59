"""One hardened lxml parser for untrusted timeline exports, and the allocator setting its trees
are freed under."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType

from lxml import etree

# Real exports run to a few MB; a cap keeps a hostile or mistaken file from exhausting memory.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class TimelineError(ValueError):
    """A timeline file that cannot be turned into frames; the message names the file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


M_MXFAST = 1  # glibc's mallopt parameter: the largest chunk a fastbin keeps
DEFAULT_MXFAST = 64 * ctypes.sizeof(ctypes.c_size_t) // 4  # glibc's default: 128 bytes


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's `mallopt`; None with another C library, or where GLIBC_TUNABLES sets the
    fastbins' size (the setting is the user's then)."""
    if "mxfast" in os.environ.get("GLIBC_TUNABLES", ""):
        return None
    try:
        if sys.platform == "linux" and os.confstr("CS_GNU_LIBC_VERSION"):
            return ctypes.CDLL(None).mallopt
    except (ValueError, OSError, AttributeError):
        pass
    return None


_MALLOPT = _glibc_mallopt()
_fastbins_off = 0  # scopes open in this process
_fastbins_lock = threading.Lock()


@contextmanager
def small_chunks_freed_at_once() -> Iterator[bool]:
    """glibc's fastbins off while it lasts; yields whether they are (False elsewhere).

    A parsed export is about 100,000 chunks of under 128 bytes. Freed into fastbins, they wait
    for the next large allocation, which then coalesces them all at once: 5 ms after a 2 MB
    export, more than freeing its tree took. Without fastbins each chunk is coalesced as it is
    freed, which costs less in all. They come back afterwards: with them off for a whole
    process, the model and feature tests ran 3% slower."""
    global _fastbins_off
    if _MALLOPT is None:
        yield False
        return
    with _fastbins_lock:
        _fastbins_off += 1
        if _fastbins_off == 1:
            _MALLOPT(M_MXFAST, 0)
    try:
        yield True
    finally:
        with _fastbins_lock:
            _fastbins_off -= 1
            if _fastbins_off == 0:
                _MALLOPT(M_MXFAST, DEFAULT_MXFAST)


# What makes a parse of an untrusted file safe: entities stay unresolved, nothing is fetched, no
# DTD is loaded, and lxml's size limits hold.
HARDENING: Mapping[str, bool] = MappingProxyType(
    {
        "resolve_entities": False,
        "no_network": True,
        "load_dtd": False,
        "dtd_validation": False,
        "huge_tree": False,
    }
)


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        **HARDENING,
        remove_comments=True,
        remove_pis=True,
        # Whitespace between elements carries nothing in xmeml; dropping it halves the nodes.
        remove_blank_text=True,
    )


def read_timeline_bytes(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> bytes:
    """The bytes of a timeline file, or `TimelineError`. Only a regular file is read: a link is
    not followed, and a FIFO or device is refused without blocking, even one swapped in after
    the folder was listed."""
    path = Path(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TimelineError(path, "is a symbolic link; links are not followed") from exc
        raise TimelineError(path, f"cannot read file ({exc.strerror or exc})") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise TimelineError(path, "is not a regular file (a FIFO, device or directory)")
        if info.st_size > max_bytes:
            raise TimelineError(
                path, f"file is {info.st_size} bytes, above the {max_bytes}-byte limit"
            )
        if info.st_size == 0:
            raise TimelineError(path, "file is empty")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            # A read of the size found: asking for `max_bytes` allocates that much up front.
            data = fh.read(info.st_size + 1)
            if len(data) > info.st_size:  # the file grew since fstat
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise TimelineError(path, f"cannot read file ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:  # the file grew between stat and read
        raise TimelineError(path, f"file exceeds the {max_bytes}-byte limit")
    return data


def read_xmeml(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, data: bytes | None = None
) -> etree._Element:
    """Parse an xmeml file (or its bytes, already read) and return its root, or raise
    `TimelineError`."""
    path = Path(path)
    if data is None:
        data = read_timeline_bytes(path, max_bytes=max_bytes)
    elif len(data) > max_bytes:
        raise TimelineError(path, f"file exceeds the {max_bytes}-byte limit")
    try:
        tree = etree.ElementTree(etree.fromstring(data, _parser()))
    except etree.XMLSyntaxError as exc:
        raise TimelineError(path, f"not well-formed XML: {exc.msg}") from exc
    except ValueError as exc:  # e.g. lxml refusing bytes it cannot decode
        raise TimelineError(path, f"not readable as XML ({exc})") from exc

    docinfo = tree.docinfo
    if docinfo.system_url or docinfo.public_id:
        raise TimelineError(path, "document references an external DTD, which is not allowed")
    dtd = docinfo.internalDTD
    if dtd is not None and (list(dtd.entities()) or list(dtd.iterelements())):
        raise TimelineError(path, "document declares entities or a DTD, which is not allowed")
    root = tree.getroot()
    if root.tag != "xmeml":
        raise TimelineError(path, f"root element is <{root.tag}>, not <xmeml> (FCP7 XML)")
    # An entity that is declared nowhere fails the parse above, so no reference survives.
    return root
