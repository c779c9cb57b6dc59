"""One hardened lxml parser for untrusted timeline exports."""

from __future__ import annotations

import os
from pathlib import Path

from lxml import etree

# Real exports run to a few MB; a cap keeps a hostile or mistaken file from exhausting memory.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024


class TimelineError(ValueError):
    """A timeline file that cannot be turned into frames; the message names the file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _parser() -> etree.XMLParser:
    # Entities stay unresolved, nothing is fetched, no DTD is loaded, and lxml's size limits hold.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def read_xmeml(
    path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES
) -> etree._Element:
    """Parse an xmeml file and return its root, or raise `TimelineError`."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TimelineError(path, f"file is {size} bytes, above the {max_bytes}-byte limit")
        if size == 0:
            raise TimelineError(path, "file is empty")
        data = path.read_bytes()
    except OSError as exc:
        raise TimelineError(path, f"cannot read file ({exc.strerror or exc})") from exc
    if len(data) > max_bytes:  # the file grew between stat and read
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
