"""FCP7 XML (xmeml) timeline → one row per sample time with the layout of 20 video tracks.

The rules this follows are those of `docs/xmeml.md`: frame rates with NTSC, half-open
`[start, end)` placement, `-1` edges resolved from the adjacent transition, the timeline's
length as the later of `<duration>` and the last clip end, keyframes read on the source axis
(`when = in + f - T0`) and held beyond the keyed range, effects matched by `effectid`,
`enabled` on tracks, clips and filters, and the top-level sequence only.

Bezier (`FCPCurve`) keyframes are interpolated linearly between keys.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
from lxml import etree

from xmlai_assets.timeline.asset_classes import ASSET_RULES, AssetRules, classify_asset
from xmlai_assets.timeline.schema import (
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    PARAM_RANGES,
    TRACK_PARAMS,
    track_column,
)
from xmlai_assets.timeline.xml import (
    DEFAULT_MAX_BYTES,
    TimelineError,
    read_xmeml,
    small_chunks_freed_at_once,
)

log = logging.getLogger(__name__)

ITEM_TAGS = ("clipitem", "generatoritem", "transitionitem")
CLIP_TAGS = ("clipitem", "generatoritem")

# effectid -> {parameterid -> output parameter}; `center` fans out to x and y.
LAYOUT_EFFECTS = {
    "basic": {"scale": "scale", "center": "center"},
    "crop": {"left": "crop_l", "right": "crop_r", "top": "crop_t", "bottom": "crop_b"},
}

# Bounds checked before anything is allocated, so a tiny file cannot ask for terabytes.
DEFAULT_MAX_SECONDS = 24 * 3600  # the longest timeline accepted; `max_seconds` changes it
TIMEBASE_RANGE = (1.0, 1000.0)  # frames per second a sequence or clip may declare
MAX_FRAME = 2**40  # |start|, |end|, |in|, |when|: far past any real timecode, exact in a float


@dataclass(frozen=True)
class TimelineInfo:
    """What was learned about a timeline besides its frames."""

    video_id: str
    source_video_name: str
    sequence_name: str
    sequence_id: str
    fps: Fraction
    declared_duration_frames: int  # the sequence's <duration> as written (0 when absent)
    length_frames: int  # the length used: the later of that and the last clip end
    width: int
    height: int
    n_video_tracks: int
    n_rows: int
    dropped_tracks: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form (frame rate as a float and as an exact ratio)."""
        out = dataclasses.asdict(self)
        out["fps"] = float(self.fps)
        out["fps_exact"] = str(self.fps)
        out["dropped_tracks"] = list(self.dropped_tracks)
        out["warnings"] = list(self.warnings)
        return out


@dataclass(slots=True)
class _Curve:
    """A keyframed parameter on the source axis (a constant is stored as a plain float)."""

    whens: np.ndarray
    values: np.ndarray

    def at(self, source_frames: np.ndarray) -> np.ndarray:
        # np.interp holds the first/last value outside the keyed range, as the format requires.
        return np.interp(source_frames, self.whens, self.values)


@dataclass(slots=True)
class _Clip:
    """A clipitem or generatoritem with its placement resolved (`-1` edges included)."""

    element: etree._Element
    label: str  # the track's, "V3"
    index: int  # its place among the track's items, from 0
    start: int
    end: int
    t0: int  # the frame that plays the clip's `in`: its start, or its head transition's start
    in_frame: int
    enabled: bool
    name: str
    file: etree._Element | None  # the <file> child, possibly an empty reference
    is_nest: bool
    filters: list[etree._Element]

    @property
    def what(self) -> str:
        """How error messages name the clip."""
        return _describe(self.label, self.element, self.name, self.index)


def _describe(label: str, el: etree._Element, name: str | None, index: int) -> str:
    return f"{label} {el.tag} {el.get('id') or name or index + 1!r}"


class _Reader:
    """Parses one document; keeps the file path so every error names it."""

    def __init__(self, path: Path, root: etree._Element, rules: AssetRules) -> None:
        self.path = path
        self.root = root
        self.rules = rules
        self.warnings: list[str] = []
        self._by_id: dict[str, dict[str, etree._Element]] = {}
        # files met in full while reading the tracks: most references resolve without a walk
        self._seen: dict[tuple[str, str], etree._Element] = {}
        self._asset_classes: dict[tuple, int] = {}
        self._source_sizes: dict[str, tuple[int, int]] = {}

    def clip_asset_class(self, clip: _Clip, track: int) -> int:
        """`classify_asset` of a clip, memoized on what decides it: its name and its file
        (exports repeat the same clips often)."""
        ref = clip.file
        key = (
            clip.name,
            "" if ref is None else ref.get("id"),
            track,
            clip.element.tag,
            clip.is_nest,
        )
        cls = self._asset_classes.get(key)
        if cls is None:
            file = self.resolve(ref)
            file_name = ""
            if file is not None:
                file_name = _text(file, "name") or unquote(_text(file, "pathurl") or "")
            cls = classify_asset(
                clip.name,
                file_name,
                track=track,
                is_generator=clip.element.tag == "generatoritem",
                is_nest=clip.is_nest,
                rules=self.rules,
            )
            if key[1] is not None:  # a file without an id cannot be told from another
                self._asset_classes[key] = cls
        return cls

    def fail(self, reason: str) -> TimelineError:
        return TimelineError(self.path, reason)

    # -- numbers -------------------------------------------------------------------------
    def number(
        self, el: etree._Element, tag: str, *, what: str, default: float | None = None
    ) -> float:
        return self.to_number(_text(el, tag), tag, what=what, default=default)

    def to_number(
        self, text: str | None, tag: str, *, what: str, default: float | None = None
    ) -> float:
        if text is None or not text.strip():
            if default is not None:
                return default
            raise self.fail(f"{what} has no <{tag}>")
        try:
            value = float(text)
        except ValueError:
            raise self.fail(f"{what} has a non-numeric <{tag}>: {text.strip()[:40]!r}") from None
        if not math.isfinite(value):
            raise self.fail(f"{what} has a non-finite <{tag}>: {text.strip()[:40]!r}")
        return value

    def frame(self, text: str | None, tag: str, *, what: str, default: float | None = None) -> int:
        """A whole frame number within `MAX_FRAME`."""
        try:
            value = int(text)  # the common case, without the float round trip
        except (TypeError, ValueError):
            value = self.to_number(text, tag, what=what, default=default)
        self.within_timecode(value, tag, what)
        if value != int(value):
            raise self.fail(f"{what} has a fractional frame count in <{tag}>: {value}")
        return int(value)

    def rate(self, el: etree._Element, *, what: str) -> Fraction | None:
        rate = el.find("rate")
        if rate is None or rate.find("timebase") is None:
            return None
        timebase = self.number(rate, "timebase", what=f"{what} rate")
        lo, hi = TIMEBASE_RANGE
        if not lo <= timebase <= hi:
            raise self.fail(f"{what} has timebase {timebase:g}, outside {lo:g}..{hi:g} fps")
        fps = Fraction(str(timebase)) if timebase != int(timebase) else Fraction(int(timebase))
        if (rate.findtext("ntsc") or "").strip().upper() == "TRUE":
            fps *= Fraction(1000, 1001)
        return fps

    # -- document structure --------------------------------------------------------------
    def top_sequence(self) -> etree._Element:
        """The timeline's sequence: the top-level one, not nested inside a clip."""
        # Walk the document around the sequences, never into one or into a clip (where a
        # sequence is a nest): exports put the timeline near the root, so this visits little.
        candidates, stack = [], [self.root]
        while stack:
            for el in stack.pop().iterchildren(tag=etree.Element):
                if el.tag == "sequence":
                    if len(el):
                        candidates.append(el)
                elif el.tag not in CLIP_TAGS:
                    stack.append(el)
        if not candidates:
            raise self.fail("document has no top-level <sequence>")
        if len(candidates) > 1:
            candidates.sort(key=lambda s: self._document_order(s))
            nested_ids = {
                s.get("id") for s in self.root.iter("sequence") if s.getparent().tag in CLIP_TAGS
            }
            candidates = [s for s in candidates if s.get("id") not in nested_ids] or candidates
            names = [s.findtext("name") or s.get("id") or "?" for s in candidates]
            if len(candidates) > 1:
                self.warnings.append(
                    f"{len(candidates)} top-level sequences {names}; using the first, {names[0]!r}"
                )
        return candidates[0]

    def _document_order(self, el: etree._Element) -> list[int]:
        """A sort key that puts elements in document order: their child indexes from the root."""
        path = []
        while (parent := el.getparent()) is not None:
            path.append(parent.index(el))
            el = parent
        return path[::-1]

    def resolve(self, el: etree._Element | None) -> etree._Element | None:
        """An element written in full, following an empty `<file id=.../>` style reference."""
        if el is None or len(el):
            return el
        found = self._seen.get((el.tag, el.get("id")))
        if found is not None:
            return found
        table = self._by_id.get(el.tag)
        if table is None:  # built on first use: one pass over the document per tag
            table = {}
            for e in self.root.iter(el.tag):
                if len(e) and e.get("id"):
                    table.setdefault(e.get("id"), e)
            self._by_id[el.tag] = table
        return table.get(el.get("id"), el)

    def source_video_name(self, video_tracks: list[etree._Element]) -> str:
        """Stem of the file the first video clipitem plays (its pathurl, else its name)."""
        for track in video_tracks:
            for clip in track.iterchildren("clipitem"):
                file = self.resolve(_child(clip, "file"))
                if file is None:
                    continue
                url = (_text(file, "pathurl") or "").strip()
                name = unquote(url).replace("\\", "/").rsplit("/", 1)[-1] if url else ""
                name = name or (_text(file, "name") or "").strip()
                stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
                if stem:
                    return stem
        return "unknown"

    def sequence_rate(self, seq: etree._Element, what: str) -> Fraction:
        """The sequence's frame rate: its own, else its format's (rates are inherited)."""
        fps = self.rate(seq, what=what)
        chars = seq.find("media/video/format/samplecharacteristics")
        if fps is None and chars is not None:
            fps = self.rate(chars, what=what)
        if fps is None:
            raise self.fail(f"{what} has no frame rate")
        return fps

    def frame_size(self, seq: etree._Element, what: str) -> tuple[int, int]:
        """(width, height) of the sequence's frame; 1920x1080, with a warning, when unknown."""
        chars = seq.find("media/video/format/samplecharacteristics")
        width = height = 0
        if chars is not None:
            width = int(self.number(chars, "width", what=f"{what} format", default=0))
            height = int(self.number(chars, "height", what=f"{what} format", default=0))
        if width <= 0 or height <= 0:
            self.warnings.append(f"{what} has no frame size; assuming 1920x1080")
            width, height = 1920, 1080
        return width, height

    def source_size(
        self, clip: etree._Element, seq_size: tuple[int, int], ref: etree._Element | None = None
    ) -> tuple[int, int]:
        """(width, height) of what a clip plays: its file's, or its nest's frame; the
        sequence's when unknown. `ref` is the clip's `<file>` child when the caller has it."""
        if ref is None:
            ref = _child(clip, "file")
        key = None if ref is None else ref.get("id")
        if key is not None and key in self._source_sizes:
            return self._source_sizes[key]
        file = self.resolve(ref)
        if file is not None:
            chars = _descendant(file, "media", "video", "samplecharacteristics")
            if chars is None:  # not under the first of each: a later <media> or <video> may hold it
                chars = file.find("media/video/samplecharacteristics")
        else:
            nest = self.resolve(_child(clip, "sequence"))
            chars = None if nest is None else nest.find("media/video/format/samplecharacteristics")
        size = seq_size
        if chars is not None:
            w, h = _plain_float(_text(chars, "width")), _plain_float(_text(chars, "height"))
            if w is None or h is None:  # missing or not a number: the full reading says which
                what = f"clip {clip.get('id') or clip.findtext('name')!r} source"
                w = self.number(chars, "width", what=what, default=0)
                h = self.number(chars, "height", what=what, default=0)
            size = (int(w), int(h)) if w > 0 and h > 0 else seq_size
        if key is not None:
            self._source_sizes[key] = size
        return size

    # -- effects -------------------------------------------------------------------------
    def curves(self, clip: _Clip) -> dict[str, float | _Curve]:
        """Layout parameters of a clip: a constant, or a keyframed curve on the source axis."""
        curves: dict[str, float | _Curve] = {}
        for flt in clip.filters:
            effect = _child(flt, "effect")
            if effect is None:
                continue
            params = LAYOUT_EFFECTS.get((_first_text(effect, "effectid") or "").strip())
            if params is None or not _enabled(flt):
                continue
            for p in effect.iterchildren("parameter"):
                out = params.get((_first_text(p, "parameterid") or "").strip())
                if out is None or out in curves or (out == "center" and "x" in curves):
                    continue  # the first enabled effect of a kind decides
                curves.update(self.parameter(p, out, clip))
        return curves

    def parameter(self, p: etree._Element, out: str, clip: _Clip) -> dict[str, float | _Curve]:
        value, keys = None, []
        for child in p.iterchildren("value", "keyframe"):
            if child.tag == "keyframe":
                keys.append(child)
            elif value is None:
                value = child
        if not keys:
            if value is None:
                return {}
            if out == "center":  # plain numbers, the common case, need no words for an error
                x, y = _plain_float(_text(value, "horiz")), _plain_float(_text(value, "vert"))
                if x is not None and y is not None:
                    return {"x": x, "y": y}
            elif (v := _plain_float(value.text)) is not None:
                return {out: v}
            v = self.value(value, out, f"{clip.what} parameter {out}")
            return {"x": v[0], "y": v[1]} if out == "center" else {out: v}
        # keyframes decide; a static <value> beside them is ignored
        what = f"{clip.what} parameter {out}"
        key_what = f"{what} keyframe"
        when_list = [self.frame_axis(_text(k, "when"), "when", what=key_what) for k in keys]
        whens = np.array(when_list)
        values = np.array([self.value(_child(k, "value"), out, what) for k in keys])
        if any(b < a for a, b in pairwise(when_list)):  # exports write them in order
            order = np.argsort(whens, kind="stable")
            whens, values = whens[order], values[order]
        if out == "center":
            return {"x": _Curve(whens, values[:, 0]), "y": _Curve(whens, values[:, 1])}
        return {out: _Curve(whens, values)}

    def frame_axis(self, text: str | None, tag: str, *, what: str) -> float:
        """A position on a frame axis that may be fractional (a keyframe's `when`)."""
        value = self.to_number(text, tag, what=what)
        self.within_timecode(value, tag, what)
        return value

    def within_timecode(self, value: float, tag: str, what: str) -> None:
        if abs(value) > MAX_FRAME:
            raise self.fail(f"{what} has <{tag}> {value:g}, beyond any timecode ({MAX_FRAME:g})")

    def value(self, el: etree._Element | None, out: str, what: str) -> float | tuple[float, float]:
        if el is None:
            raise self.fail(f"{what} has a keyframe without <value>")
        if out == "center":
            return (
                self.number(el, "horiz", what=what, default=0.0),
                self.number(el, "vert", what=what, default=0.0),
            )
        try:
            value = float(el.text)
        except (TypeError, ValueError):
            raise self.fail(
                f"{what} has a non-numeric value {(el.text or '').strip()[:40]!r}"
            ) from None
        if not math.isfinite(value):
            raise self.fail(f"{what} has a non-finite value {el.text.strip()[:40]!r}")
        return value

    # -- tracks --------------------------------------------------------------------------
    def transition_cut(self, tr: etree._Element, what: Callable[[], str]) -> tuple[int, int]:
        """(start, cut frame) of a transition: Premiere's cutPoint, else its alignment. `what`
        names it, for an error."""
        fields = _texts(tr, "start", "end", "cutPoint", "alignment")
        has_cut = "cutPoint" in fields
        try:  # plain integers, the common case; anything else is read in full below
            start, end = int(fields["start"]), int(fields["end"])  # type: ignore[arg-type]
            offset = int(fields["cutPoint"]) if has_cut else None  # type: ignore[arg-type]
            if max(abs(start), abs(end), abs(offset or 0)) > MAX_FRAME:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            start = self.frame(fields.get("start"), "start", what=what())
            end = self.frame(fields.get("end"), "end", what=what())
            offset = self.frame(fields["cutPoint"], "cutPoint", what=what()) if has_cut else None
        if offset is not None:
            return start, start + offset
        alignment = (fields.get("alignment") or "center").strip().lower()
        if alignment in ("start", "start-black"):
            return start, start
        if alignment in ("end", "end-black"):
            return start, end
        return start, (start + end) // 2

    def track_clips(
        self, track: etree._Element, label: str, *, warn: bool = True
    ) -> tuple[list[_Clip], int | None]:
        """The clips on a track with their edges resolved, disabled ones flagged, in XML order,
        and the latest end any clip has (a `-1` end resolved; None without clips)."""
        items = list(track.iterchildren(*ITEM_TAGS))
        tags = [el.tag for el in items]
        cuts: dict[int, tuple[int, int]] = {}  # each transition's cut is computed once

        def cut(at: int, side: str, clip: int, name: str | None) -> tuple[int, int]:
            """The cut of the transition at `at`, on the `side` of the clip at `clip`."""
            if at not in cuts:
                cuts[at] = self.transition_cut(
                    items[at],
                    lambda: f"{_describe(label, items[clip], name, clip)} {side} transition",
                )
            return cuts[at]

        clips, last = [], None
        for i, el in enumerate(items):
            tag = tags[i]
            if tag == "transitionitem":
                continue
            texts: dict[str, str | None] = {}
            file, is_nest, filters = None, False, []
            for child in el.iterchildren(*_CLIP_FIELDS):
                field = child.tag
                if field == "filter":
                    filters.append(child)
                elif field == "file":
                    if file is None:
                        file = child
                elif field == "sequence":
                    is_nest = True
                elif field not in texts:
                    texts[field] = child.text
            if file is not None and len(file):
                file_id = file.get("id")
                if file_id:
                    self._seen.setdefault(("file", file_id), file)
            name = texts.get("name")
            try:  # plain integers, the common case; anything else is read in full below
                start, end = int(texts["start"]), int(texts["end"])
                in_text = texts.get("in")
                in_frame = 0 if in_text is None else int(in_text)
                if max(abs(start), abs(end), abs(in_frame)) > MAX_FRAME:
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                what = _describe(label, el, name, i)
                start = self.frame(texts.get("start"), "start", what=what)
                end = self.frame(texts.get("end"), "end", what=what)
                in_frame = self.frame(texts.get("in"), "in", what=what, default=0)
            if end == -1:
                if i + 1 == len(items) or tags[i + 1] != "transitionitem":
                    if warn:
                        self.warnings.append(
                            f"{_describe(label, el, name, i)}: end is -1 with no transition "
                            "after it; skipped"
                        )
                    continue
                end = cut(i + 1, "tail", i, name)[1]
            last = end if last is None or end > last else last
            t0 = start
            if start == -1:
                if i == 0 or tags[i - 1] != "transitionitem":
                    if warn:
                        self.warnings.append(
                            f"{_describe(label, el, name, i)}: start is -1 with no transition "
                            "before it; skipped"
                        )
                    continue
                t0, start = cut(i - 1, "head", i, name)
            if end <= start:
                continue
            enabled = texts.get("enabled")
            clips.append(
                _Clip(
                    el,
                    label,
                    i,
                    start,
                    end,
                    t0,
                    in_frame,
                    enabled is None or enabled.strip().upper() != "FALSE",
                    name=name or "",
                    file=file,
                    is_nest=is_nest,
                    filters=filters,
                )
            )
        return clips, last

    def last_end(self, section: etree._Element | None, label: str) -> int | None:
        """The latest end of any clip on the tracks of `section` (a sequence's `<audio>`), as
        `track_clips` finds it: the written ends and, for each `-1` end, the cut of the
        transition after it."""
        if section is None:
            return None
        try:
            texts = _CLIP_ENDS(section)
            ends = [int(text) for text in texts]
            tails = (  # an end's text knows its <end>, whose parent is the clip
                next(text.getparent().getparent().itersiblings(*ITEM_TAGS), None)
                for text, end in zip(texts, ends, strict=True)
                if end == -1
            )
            cuts = [
                self.transition_cut(tail, lambda: f"{label} transition")[1]
                for tail in tails
                if tail is not None and tail.tag == "transitionitem"
            ]
        except ValueError:  # not plain integers: the full reading names the problem
            tracks = section.iterfind("track")
            ends = [
                self.track_clips(t, f"{label}{i}", warn=False)[1] for i, t in enumerate(tracks, 1)
            ]
            cuts = []
        return max((end for end in ends + cuts if end is not None and end != -1), default=None)


_CLIP_ENDS = etree.XPath("track/*[self::clipitem or self::generatoritem]/end/text()")
_CLIP_TEXTS = ("enabled", "start", "end", "in", "name")
_CLIP_FIELDS = (*_CLIP_TEXTS, "file", "sequence", "filter")


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    """First direct child with this tag (cheaper than `find` on a hot path)."""
    return next(el.iterchildren(tag), None)


def _descendant(el: etree._Element, *tags: str) -> etree._Element | None:
    """The first child of each tag in turn: where it exists, what `el.find("a/b/c")` finds,
    without the path parser."""
    for tag in tags:
        el = _child(el, tag)
        if el is None:
            return None
    return el


def _text(el: etree._Element, tag: str) -> str | None:
    child = next(el.iterchildren(tag), None)
    return None if child is None else child.text


def _first_text(el: etree._Element, tag: str) -> str | None:
    """`_text` for a tag that exports write as the element's first child (`parameterid`)."""
    first = el[0] if len(el) else None
    return first.text if first is not None and first.tag == tag else _text(el, tag)


def _texts(el: etree._Element, *tags: str) -> dict[str, str | None]:
    """Text of the first direct child of each tag, in one pass over the children."""
    out: dict[str, str | None] = {}
    for child in el.iterchildren(*tags):
        out.setdefault(child.tag, child.text)
    return out


def _plain_float(text: str | None) -> float | None:
    """A finite number written plainly, else None (for the reading that names the problem)."""
    try:
        value = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _enabled(el: etree._Element) -> bool:
    return (_text(el, "enabled") or "").strip().upper() != "FALSE"


def _constant_strings(n: int, value: str) -> pd.Categorical:
    # One category: cheaper to build than n Python strings, and written the same.
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


class _Samples:
    """Sample k shows timeline frame floor(k * fps / rate_hz), in exact integers."""

    def __init__(self, n_frames: int, fps: Fraction, rate_hz: Fraction) -> None:
        self.num = fps.numerator * rate_hz.denominator
        self.den = fps.denominator * rate_hz.numerator
        self.rate_hz = rate_hz
        # t_k < n_frames / fps  <=>  k * num < n_frames * den
        self.n = self.first_at(n_frames)
        self.frames = (np.arange(self.n, dtype=np.int64) * self.num) // self.den

    def first_at(self, frame: int) -> int:
        """The first sample showing `frame` or a later one: ceil(frame * den / num)."""
        return -(-frame * self.den // self.num)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Samples [lo, hi) that show frames in [start, end)."""
        return (
            min(max(self.first_at(start), 0), self.n),
            min(max(self.first_at(end), 0), self.n),
        )


def parse_timeline_with_info(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    rules: AssetRules = ASSET_RULES,
    data: bytes | None = None,
) -> tuple[pd.DataFrame, TimelineInfo]:
    """Like `parse_timeline`, also returning what was learned about the timeline. `data` is
    the file's content when the caller has read it already (the file is then not opened)."""
    with small_chunks_freed_at_once():  # the document's tree is freed on return from this call
        return _parse(path, sample_rate_hz, max_bytes, max_seconds, rules, data)


def _parse(
    path: str | os.PathLike[str],
    sample_rate_hz: float,
    max_bytes: int,
    max_seconds: float,
    rules: AssetRules,
    data: bytes | None,
) -> tuple[pd.DataFrame, TimelineInfo]:
    path = Path(path)
    if not 0 < sample_rate_hz <= TIMEBASE_RANGE[1]:
        raise ValueError(f"sample_rate_hz must be in (0, {TIMEBASE_RANGE[1]:g}]: {sample_rate_hz}")
    rate_hz = Fraction(sample_rate_hz).limit_denominator(1_000_000)
    root = read_xmeml(path, max_bytes=max_bytes, data=data)
    reader = _Reader(path, root, rules)
    seq = reader.top_sequence()
    seq_what = f"sequence {seq.findtext('name') or seq.get('id') or ''!r}".strip()

    fps = reader.sequence_rate(seq, seq_what)
    declared = reader.frame_axis(seq.findtext("duration") or "0", "duration", what=seq_what)
    if declared < 0:
        raise reader.fail(f"{seq_what} has a negative duration ({declared:g} frames)")
    width, height = reader.frame_size(seq, seq_what)

    video_tracks = seq.findall("media/video/track")
    video = [reader.track_clips(t, f"V{i}") for i, t in enumerate(video_tracks, start=1)]
    video_end = max((end for _, end in video if end is not None), default=None)
    audio_end = reader.last_end(seq.find("media/audio"), "A")
    declared_frames = math.ceil(declared)
    if video_end is None and audio_end is None:
        if declared_frames == 0:
            raise reader.fail(f"{seq_what} has no clips and no duration: there is no timeline")
        reader.warnings.append(f"{seq_what} has no clips: every row is inactive")
    elif video_end is None:
        reader.warnings.append(f"{seq_what} has audio but no video clips: every row is inactive")
    length = max(declared_frames, video_end or 0, audio_end or 0)
    if length / fps > max_seconds:
        raise reader.fail(
            f"{seq_what} is {float(length / fps) / 3600:.1f} h long ({length} frames at "
            f"{float(fps):g} fps), above the {max_seconds / 3600:g} h limit"
        )
    dropped = [
        f"V{i} ({len(clips)} clips)"
        for i, (clips, _) in enumerate(video[N_TRACKS:], start=N_TRACKS + 1)
    ]
    if dropped:
        log.warning("%s: keeps V1..V%d, drops %s", path, N_TRACKS, ", ".join(dropped))

    samples = _Samples(length, fps, rate_hz)
    n = samples.n
    source_name = reader.source_video_name(video_tracks)
    columns: dict[str, object] = {
        "video_id": _constant_strings(n, path.stem),
        "source_video_name": _constant_strings(n, source_name),
        "time": np.arange(n, dtype=np.float64) * rate_hz.denominator / rate_hz.numerator,
    }
    shown = [  # the enabled clips of each enabled track, V1..V20
        [c for c in clips if c.enabled] if _enabled(track) else []
        for (clips, _), track in zip(video[:N_TRACKS], video_tracks, strict=False)
    ]
    paints = [
        _plan_track(reader, clips, i, samples, (width, height)) for i, clips in enumerate(shown, 1)
    ]
    paints += [[]] * (N_TRACKS - len(paints))
    # A few large blocks instead of an array per column: row 0 of each holds the inactive
    # values that every column nothing writes to shares (read-only); each track with clips
    # gets rows for `active`, `asset` and the parameters its clips set. Memory follows what the
    # timeline holds.
    used = [sorted({p for paint in track for p in paint.values}) for track in paints]
    n_painted = sum(1 for track in paints if track)
    ints = np.zeros((1 + n_painted, 2, n), dtype=np.int8)
    floats = np.empty((len(CONTINUOUS_PARAMS) + sum(map(len, used)), n), dtype=np.float64)
    inactive = dict(zip(CONTINUOUS_PARAMS, floats, strict=False))
    row, k = len(CONTINUOUS_PARAMS), 0
    for i, track in enumerate(paints):
        values = {"active": ints[0, 0], "asset": ints[0, 1], **inactive}
        if track:
            k += 1
            values.update(active=ints[k, 0], asset=ints[k, 1])
            for p in used[i]:
                values[p] = floats[row]
                row += 1
        for p in CONTINUOUS_PARAMS:
            if values[p] is not inactive[p]:
                values[p][:] = INACTIVE_VALUES[p]
        _paint_track(track, values)
        for p in TRACK_PARAMS:
            columns[track_column(i + 1, p)] = values[p]
    for p, array in inactive.items():
        array[:] = INACTIVE_VALUES[p]
    for array in (*inactive.values(), ints[0, 0], ints[0, 1]):
        array.flags.writeable = False

    df = pd.DataFrame(columns, copy=False)  # `columns` is in the order of COLUMNS
    info = TimelineInfo(
        video_id=path.stem,
        source_video_name=source_name,
        sequence_name=seq.findtext("name") or "",
        sequence_id=seq.get("id") or "",
        fps=fps,
        declared_duration_frames=declared_frames,
        length_frames=length,
        width=width,
        height=height,
        n_video_tracks=len(video_tracks),
        n_rows=n,
        dropped_tracks=tuple(dropped),
        warnings=tuple(reader.warnings),
    )
    return df, info


@dataclass(slots=True)
class _Paint:
    """What one clip writes: samples [lo, hi), its asset class and its parameter values."""

    lo: int
    hi: int
    asset: int
    values: dict[str, float | np.ndarray]


def _plan_track(
    reader: _Reader,
    clips: list[_Clip],
    n_track: int,
    samples: _Samples,
    seq_size: tuple[int, int],
) -> list[_Paint]:
    """The values each enabled clip of a track writes, checked against the schema's ranges."""
    paints = []
    for clip in clips:
        lo, hi = samples.span(clip.start, clip.end)
        if lo == hi:
            continue
        values: dict[str, float | np.ndarray] = {}
        if clip.filters:
            source_frames = source_size = None
            for p, curve in reader.curves(clip).items():
                if isinstance(curve, _Curve):
                    if source_frames is None:  # timeline frame f reads the curve at in + (f - T0)
                        source_frames = samples.frames[lo:hi] - clip.t0 + clip.in_frame
                    v = curve.at(source_frames)
                else:
                    v = curve
                if p in ("x", "y"):  # Premiere normalizes center by the source size
                    if source_size is None:
                        source_size = reader.source_size(clip.element, seq_size, clip.file)
                    axis = 0 if p == "x" else 1
                    v = v * (source_size[axis] / seq_size[axis])
                low, high = PARAM_RANGES[p]
                vmin, vmax = (v, v) if isinstance(v, float) else (v.min(), v.max())
                if not (low <= vmin and vmax <= high):  # False for NaN too
                    raise reader.fail(
                        f"{clip.what}: {p} reaches {vmax if vmax > high else vmin:g}, "
                        f"outside {low:g}..{high:g}"
                    )
                values[p] = v
        paints.append(_Paint(lo, hi, reader.clip_asset_class(clip, n_track), values))
    return paints


def _paint_track(paints: list[_Paint], values: dict[str, np.ndarray]) -> None:
    """Write each clip's values into the samples it covers; where clips overlap (never in a
    valid export) the later one wins, and a parameter it does not set is reset."""
    written = {p for paint in paints for p in paint.values}
    painted_to = 0
    for paint in paints:
        lo, hi = paint.lo, paint.hi
        overlaps = lo < painted_to and bool(values["active"][lo:hi].any())
        painted_to = max(painted_to, hi)
        values["active"][lo:hi] = 1
        values["asset"][lo:hi] = paint.asset
        for p, v in paint.values.items():
            values[p][lo:hi] = v
        if overlaps:
            for p in written.difference(paint.values):
                values[p][lo:hi] = INACTIVE_VALUES[p]


def parse_timeline(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    rules: AssetRules = ASSET_RULES,
) -> pd.DataFrame:
    """Parse an FCP7 XML timeline into one row per sample time (183 columns, see `schema`).

    The timeline runs to the later of the sequence's `<duration>` and its last clip end.
    Raises `TimelineError` (naming the file and the reason) for anything that is not a
    readable, safe xmeml timeline, or one longer than `max_seconds`. The frame's
    `attrs["timeline"]` holds `TimelineInfo.as_dict()`.
    """
    df, info = parse_timeline_with_info(
        path,
        sample_rate_hz=sample_rate_hz,
        max_bytes=max_bytes,
        max_seconds=max_seconds,
        rules=rules,
    )
    df.attrs["timeline"] = info.as_dict()
    return df
