"""Writing a placement into a timeline export: one clip's Basic Motion (scale, centre) and Crop,
set statically, every other byte of the file as it was.

The file is read as the parser reads it (hardened: no DTD, no entities, size limits). The
clip's elements are found in the parsed tree and their byte ranges with expat, whose events
report the byte where each tag starts; the new text replaces those ranges or is inserted, so
whitespace, attribute quoting, comments and the XML declaration stay exactly as they were.
Values are in the master CSV's units (`timeline/schema.py`); the centre is written in Premiere's
source-normalized units, the inverse of what the parser reads, so the written file parses back
to the placement.
"""

from __future__ import annotations

import os
import xml.parsers.expat
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from xmlai_assets.timeline.asset_classes import ASSET_RULES
from xmlai_assets.timeline.parser import LAYOUT_EFFECTS, PARAM_RANGES, _Reader
from xmlai_assets.timeline.xml import (
    DEFAULT_MAX_BYTES,
    TimelineError,
    read_timeline_bytes,
    read_xmeml,
)


@dataclass(frozen=True)
class Placement:
    """Where a clip sits: Basic Motion scale (percent of the source), centre offset from the
    frame centre (x in frame widths, y in frame heights) and crops (percent)."""

    scale: float
    x: float
    y: float
    crop_l: float = 0.0
    crop_r: float = 0.0
    crop_t: float = 0.0
    crop_b: float = 0.0

    def check(self, path: str | os.PathLike[str]) -> None:
        """Refuse values outside the ranges the parser accepts."""
        for name, value in vars(self).items():
            low, high = PARAM_RANGES[name]
            if not low <= value <= high:  # False for NaN too
                raise TimelineError(
                    path, f"placement {name} {value!r} is outside {low:g}..{high:g}"
                )


def _spans(data: bytes) -> list[tuple[int, int, int]]:
    """(start byte, end byte, end of the start tag) of every element, in document order. Only
    for a document `read_xmeml` has accepted (no DTD, no entities)."""
    spans: list[list[int]] = []
    stack: list[int] = []
    parser = xml.parsers.expat.ParserCreate()

    def start(name, attrs):
        at = parser.CurrentByteIndex
        stack.append(len(spans))
        spans.append([at, -1, _tag_end(data, at)])

    def end(name):
        at = parser.CurrentByteIndex
        i = stack.pop()
        if at == spans[i][0]:  # an empty-element tag: one event for both
            spans[i][1] = spans[i][2]
        else:
            spans[i][1] = _tag_end(data, at)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)
    return [tuple(s) for s in spans]


def _tag_end(data: bytes, at: int) -> int:
    """Past the `>` that ends the tag starting at byte `at` (a `>` inside a quoted attribute
    value does not end it)."""
    quote = None
    for i in range(at, len(data)):
        c = data[i]
        if quote is not None:
            if c == quote:
                quote = None
        elif c in b"\"'":
            quote = c
        elif c == 0x3E:  # >
            return i + 1
    raise ValueError("unterminated tag")  # never in a document lxml has parsed


def _number(value: float) -> str:
    """The shortest text that reads back as exactly this float, without an exponent where
    Premiere writes none."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


class _Edits:
    """Byte-range replacements on the original bytes, applied at the end in one pass."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.edits: list[tuple[int, int, bytes]] = []

    def replace(self, start: int, end: int, text: str) -> None:
        self.edits.append((start, end, text.encode("utf-8")))

    def insert(self, at: int, text: str) -> None:
        self.replace(at, at, text)

    def apply(self) -> bytes:
        out, last = [], 0
        for start, end, text in sorted(self.edits, key=lambda e: (e[0], e[1])):
            if start < last:
                raise ValueError("overlapping edits")  # never: each edit is its own element
            out += [self.data[last:start], text]
            last = end
        return b"".join(out) + self.data[last:]


def place_clip(
    path: str | os.PathLike[str],
    clip_id: str,
    placement: Placement,
    *,
    replace_keyframes: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> bytes:
    """The bytes of the timeline file at `path` with the video clipitem `clip_id` of its
    sequence (the one the parser reads) placed at `placement`: the first enabled Basic Motion
    and Crop filters of the clip get the static values (added where the clip has none), and
    nothing else changes. A parameter with keyframes is refused unless `replace_keyframes`,
    which removes its keys. Raises `TimelineError` naming the file and the reason."""
    path = Path(path)
    placement.check(path)
    data = read_timeline_bytes(path, max_bytes=max_bytes)
    root = read_xmeml(path, max_bytes=max_bytes, data=data)
    reader = _Reader(path, root, ASSET_RULES)
    seq = reader.top_sequence()
    clip = next(
        (c for c in seq.iterfind("media/video/track/clipitem") if c.get("id") == clip_id), None
    )
    if clip is None:
        raise TimelineError(path, f"no video clipitem with id {clip_id!r} in the sequence")
    seq_size = reader.frame_size(seq, "the sequence")
    src_w, src_h = reader.source_size(clip, seq_size)
    values = {
        "scale": placement.scale,
        # the centre in Premiere's units: normalized by the clip's source size
        "center": (placement.x * seq_size[0] / src_w, placement.y * seq_size[1] / src_h),
        "crop_l": placement.crop_l,
        "crop_r": placement.crop_r,
        "crop_t": placement.crop_t,
        "crop_b": placement.crop_b,
    }
    if (root.getroottree().docinfo.encoding or "UTF-8").upper() not in ("UTF-8", "US-ASCII"):
        raise TimelineError(path, "only a UTF-8 file can be edited in place")
    # each element of the clip by its place in document order, which is expat's order too (the
    # dict holds the elements, so lxml hands out the same objects while it is alive)
    order = {el: -1 for el in clip.iter(etree.Element)}
    for i, el in enumerate(root.iter(etree.Element)):
        if el in order:
            order[el] = i
    spans = _spans(data)
    edits = _Edits(data)

    def span(el: etree._Element) -> tuple[int, int, int]:
        return spans[order[el]]

    indent = _indent(data, span(clip)[0])
    filters = list(clip.iterchildren("filter"))
    for effectid, names in LAYOUT_EFFECTS.items():
        effect = next(
            (
                f.find("effect")
                for f in filters
                if (f.findtext("enabled") or "").strip().upper() != "FALSE"
                and f.find("effect") is not None
                and (f.find("effect").findtext("effectid") or "").strip() == effectid
            ),
            None,
        )
        if effect is None:  # a new filter after the clip's last, or before its closing tag
            if filters:
                at = _line_end(data, span(filters[-1])[1])
            else:
                at = _line_start(data, _closing_tag(data, span(clip)[1]))
            edits.insert(at, _filter_text(effectid, names, values, indent + "\t"))
            continue
        present = {
            (p.findtext("parameterid") or "").strip(): p for p in effect.iterchildren("parameter")
        }
        for parameterid, column in names.items():
            value = values[column]
            parameter = present.get(parameterid)
            if parameter is None:
                edits.insert(
                    _line_start(data, _closing_tag(data, span(effect)[1])),
                    _parameter_text(parameterid, value, _indent(data, span(effect)[0]) + "\t"),
                )
                continue
            if parameter.find("keyframe") is not None and not replace_keyframes:
                raise TimelineError(
                    path,
                    f"clipitem {clip_id!r}: {parameterid} is keyframed; ask to replace its "
                    "keyframes to set a static placement",
                )
            _set_static(edits, data, parameter, span, value)
    return edits.apply()


def _set_static(edits: _Edits, data: bytes, parameter, span, value) -> None:
    """The parameter's keyframes removed and its `<value>` set (added after the last child
    where it has none)."""
    inner = _indent(data, span(parameter)[0]) + "\t"
    static = None
    for child in parameter:
        if child.tag == "keyframe":
            start, end, _ = span(child)
            edits.replace(_line_start(data, start), _line_end(data, end), "")
        elif child.tag == "value" and static is None:
            static = child
    if static is not None:
        start, end, _ = span(static)
        edits.replace(start, end, _value_text(value, inner).lstrip())
    else:
        at = _line_start(data, _closing_tag(data, span(parameter)[1]))
        edits.insert(at, _value_text(value, inner) + "\n")


def _value_text(value, indent: str) -> str:
    if isinstance(value, tuple):
        horiz, vert = value
        return (
            f"{indent}<value>\n{indent}\t<horiz>{_number(horiz)}</horiz>\n"
            f"{indent}\t<vert>{_number(vert)}</vert>\n{indent}</value>"
        )
    return f"{indent}<value>{_number(value)}</value>"


def _parameter_text(parameterid: str, value, indent: str) -> str:
    return (
        f"{indent}<parameter>\n{indent}\t<parameterid>{parameterid}</parameterid>\n"
        f"{indent}\t<name>{_PARAMETER_NAMES[parameterid]}</name>\n"
        f"{_value_text(value, indent + chr(9))}\n{indent}</parameter>\n"
    )


_PARAMETER_NAMES = {
    "scale": "Scale",
    "center": "Center",
    "left": "left",
    "right": "right",
    "top": "top",
    "bottom": "bottom",
}
_EFFECT_NAMES = {"basic": ("Basic Motion", "motion"), "crop": ("Crop", "motion")}


def _filter_text(effectid: str, names: dict[str, str], values: dict, indent: str) -> str:
    name, category = _EFFECT_NAMES[effectid]
    inner = indent + "\t"
    parameters = "".join(
        _parameter_text(parameterid, values[column], inner + "\t")
        for parameterid, column in names.items()
    )
    return (
        f"{indent}<filter>\n{inner}<effect>\n{inner}\t<name>{name}</name>\n"
        f"{inner}\t<effectid>{effectid}</effectid>\n"
        f"{inner}\t<effectcategory>{category}</effectcategory>\n"
        f"{inner}\t<effecttype>motion</effecttype>\n{inner}\t<mediatype>video</mediatype>\n"
        f"{parameters}{inner}</effect>\n{indent}</filter>\n"
    )


def _closing_tag(data: bytes, end: int) -> int:
    """Where the closing tag that ends at byte `end` begins."""
    return data.rindex(b"</", 0, end)


def _line_start(data: bytes, at: int) -> int:
    """`at`, or the start of its line where only whitespace precedes it there."""
    start = data.rfind(b"\n", 0, at) + 1
    return start if not data[start:at].strip() else at


def _line_end(data: bytes, at: int) -> int:
    """Past the line break after `at` where only whitespace follows it on its line."""
    end = data.find(b"\n", at)
    return end + 1 if end != -1 and not data[at:end].strip() else at


def _indent(data: bytes, at: int) -> str:
    """The whitespace that begins the line of byte `at` (tabs or spaces, as the file has)."""
    start = data.rfind(b"\n", 0, at) + 1
    line = data[start:at]
    return line[: len(line) - len(line.lstrip())].decode("ascii", "replace")


@dataclass(frozen=True)
class ClipRef:
    """A clip of the sequence, as a suggestion needs it."""

    id: str  # its clipitem id, which `place_clip` takes
    name: str
    track: int  # 1-based video track
    start: int  # frames of the sequence, [start, end)
    end: int
    asset: int  # its asset class
    enabled: bool


def find_clip(
    path: str | os.PathLike[str],
    track: int,
    *,
    name: str | None = None,
    at_seconds: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> ClipRef:
    """The clip on video track `track` (1-based) of the sequence the parser reads: the one
    named `name`, or the one playing at `at_seconds`. Raises `TimelineError` naming the file
    and what is missing, or, where several clips of the track have that name, when each
    starts."""
    path = Path(path)
    if (name is None) == (at_seconds is None):
        raise ValueError("give the clip's name or a time, one of the two")
    root = read_xmeml(path, max_bytes=max_bytes)
    reader = _Reader(path, root, ASSET_RULES)
    seq = reader.top_sequence()
    tracks = seq.findall("media/video/track")
    if not 1 <= track <= len(tracks):
        raise TimelineError(path, f"no video track V{track}: the sequence has {len(tracks)}")
    fps = reader.sequence_rate(seq, "the sequence")
    clips, _ = reader.track_clips(tracks[track - 1], f"V{track}", warn=False)
    found = [
        clip
        for clip in clips
        if (name is None or clip.name == name)
        and (at_seconds is None or clip.start <= at_seconds * fps < clip.end)
    ]
    if len(found) > 1:  # one name for several clips: which one is the editor's to say
        starts = ", ".join(f"{float(c.start / fps):.2f} s" for c in found[:10])
        more = f" and {len(found) - 10} more" if len(found) > 10 else ""
        raise TimelineError(
            path,
            f"{len(found)} clips named {name!r} on V{track}, starting at {starts}{more}: "
            "give the time of the one to place instead of its name",
        )
    if not found:
        wanted = f"named {name!r}" if name is not None else f"playing at {at_seconds:g} s"
        raise TimelineError(path, f"no clip {wanted} on V{track}")
    [clip] = found
    if not clip.element.get("id"):
        raise TimelineError(path, f"{clip.what} has no id to address it by")
    return ClipRef(
        id=clip.element.get("id"),
        name=clip.name,
        track=track,
        start=clip.start,
        end=clip.end,
        asset=reader.clip_asset_class(clip, track),
        enabled=clip.enabled,
    )
