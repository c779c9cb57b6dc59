"""FCP7 XML (xmeml) timeline → one row per sample time with the layout of 20 video tracks.

The rules this follows are those of `docs/xmeml.md`: frame rates with NTSC, half-open
`[start, end)` placement, `-1` edges resolved from the adjacent transition, keyframes read on
the source axis (`when = in + f - T0`) and held beyond the keyed range, effects matched by
`effectid`, `enabled` on tracks, clips and filters, and the top-level sequence only.

Bezier (`FCPCurve`) keyframes are interpolated linearly between keys.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
from lxml import etree

from xmlai_assets.timeline.asset_classes import ASSET_RULES, AssetRules, classify_asset
from xmlai_assets.timeline.schema import (
    COLUMNS,
    CONTINUOUS_PARAMS,
    INACTIVE_VALUES,
    N_TRACKS,
    TRACK_PARAMS,
    track_column,
)
from xmlai_assets.timeline.xml import DEFAULT_MAX_BYTES, TimelineError, read_xmeml

log = logging.getLogger(__name__)

ITEM_TAGS = ("clipitem", "generatoritem", "transitionitem")

# effectid -> {parameterid -> output parameter}; `center` fans out to x and y.
LAYOUT_EFFECTS = {
    "basic": {"scale": "scale", "center": "center"},
    "crop": {"left": "crop_l", "right": "crop_r", "top": "crop_t", "bottom": "crop_b"},
}


@dataclass(frozen=True)
class TimelineInfo:
    """What was learned about a timeline besides its frames."""

    video_id: str
    source_video_name: str
    sequence_name: str
    sequence_id: str
    fps: Fraction
    duration_frames: int
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


@dataclass
class _Curve:
    """A keyframed parameter on the source axis (a constant is stored as a plain float)."""

    whens: np.ndarray
    values: np.ndarray

    def at(self, source_frames: np.ndarray) -> np.ndarray:
        # np.interp holds the first/last value outside the keyed range, as the format requires.
        return np.interp(source_frames, self.whens, self.values)


@dataclass
class _Clip:
    element: etree._Element
    kind: str
    start: int
    end: int
    t0: int
    in_frame: int
    curves: dict[str, float | _Curve] = field(default_factory=dict)


class _Reader:
    """Parses one document; keeps the file path so every error names it."""

    def __init__(self, path: Path, root: etree._Element, rules: AssetRules) -> None:
        self.path = path
        self.root = root
        self.rules = rules
        self.warnings: list[str] = []
        self._by_id: dict[str, dict[str, etree._Element]] = {}
        self._asset_classes: dict[tuple, int] = {}

    def asset_class(
        self, name: str, file_name: str, track: int, is_generator: bool, is_nest: bool
    ) -> int:
        """`classify_asset`, memoized per document (exports repeat the same clips often)."""
        key = (name, file_name, track, is_generator, is_nest)
        cls = self._asset_classes.get(key)
        if cls is None:
            cls = self._asset_classes[key] = classify_asset(
                name,
                file_name,
                track=track,
                is_generator=is_generator,
                is_nest=is_nest,
                rules=self.rules,
            )
        return cls

    def fail(self, reason: str) -> TimelineError:
        return TimelineError(self.path, reason)

    # -- numbers -------------------------------------------------------------------------
    def number(
        self, el: etree._Element, tag: str, *, what: str, default: float | None = None
    ) -> float:
        return self.to_number(el.findtext(tag), tag, what=what, default=default)

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

    def frame(self, el: etree._Element | dict, tag: str, *, what: str) -> int:
        text = el.get(tag) if isinstance(el, dict) else el.findtext(tag)
        value = self.to_number(text, tag, what=what)
        if value != int(value):
            raise self.fail(f"{what} has a fractional frame count in <{tag}>: {value}")
        return int(value)

    def rate(self, el: etree._Element, *, what: str) -> Fraction | None:
        rate = el.find("rate")
        if rate is None or rate.find("timebase") is None:
            return None
        timebase = self.number(rate, "timebase", what=f"{what} rate")
        if timebase <= 0:
            raise self.fail(f"{what} has a non-positive timebase {timebase}")
        fps = Fraction(str(timebase)) if timebase != int(timebase) else Fraction(int(timebase))
        if (rate.findtext("ntsc") or "").strip().upper() == "TRUE":
            fps *= Fraction(1000, 1001)
        return fps

    # -- document structure --------------------------------------------------------------
    def top_sequence(self) -> etree._Element:
        # A sequence inside a clipitem is a nest, not the timeline.
        candidates = [
            s
            for s in self.root.iter("sequence")
            if len(s) and not any(a.tag in ("clipitem", "generatoritem") for a in s.iterancestors())
        ]
        if not candidates:
            raise self.fail("document has no top-level <sequence>")
        if len(candidates) > 1:
            nested_ids = {
                s.get("id") for s in self.root.iter("sequence") if s.getparent().tag == "clipitem"
            }
            unused = [s for s in candidates if s.get("id") not in nested_ids]
            candidates = unused or candidates
            names = [s.findtext("name") or s.get("id") or "?" for s in candidates]
            if len(candidates) > 1:
                self.warnings.append(
                    f"{len(candidates)} top-level sequences {names}; using the first, {names[0]!r}"
                )
        return candidates[0]

    def source_video_name(self) -> str:
        for f in self.root.iter("file"):
            url = f.findtext("pathurl")
            if url and url.strip() and f.find("media/video") is not None:
                name = unquote(url.strip()).replace("\\", "/").rsplit("/", 1)[-1]
                stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
                if stem:
                    return stem
        return "unknown"

    def resolve(self, el: etree._Element | None) -> etree._Element | None:
        """An element written in full, following an empty `<file id=.../>` style reference."""
        if el is None or len(el):
            return el
        table = self._by_id.get(el.tag)
        if table is None:  # built on first use: one pass over the document per tag
            table = {e.get("id"): e for e in self.root.iter(el.tag) if len(e) and e.get("id")}
            self._by_id[el.tag] = table
        return table.get(el.get("id"), el)

    def source_size(self, clip: etree._Element, seq_size: tuple[int, int]) -> tuple[int, int]:
        file = self.resolve(_child(clip, "file"))
        if file is not None:
            chars = file.find("media/video/samplecharacteristics")
        else:
            nest = self.resolve(_child(clip, "sequence"))
            chars = None if nest is None else nest.find("media/video/format/samplecharacteristics")
        if chars is None:
            return seq_size
        what = f"clip {clip.get('id') or clip.findtext('name')!r} source"
        w = self.number(chars, "width", what=what, default=0)
        h = self.number(chars, "height", what=what, default=0)
        return (int(w), int(h)) if w > 0 and h > 0 else seq_size

    # -- effects -------------------------------------------------------------------------
    def curves(self, clip: etree._Element, what: str) -> dict[str, float | _Curve]:
        """Layout parameters of a clip: a constant, or a keyframed curve on the source axis."""
        curves: dict[str, float | _Curve] = {}
        for flt in clip.iterchildren("filter"):
            if (_text(flt, "enabled") or "").strip().upper() == "FALSE":
                continue
            effect = _child(flt, "effect")
            if effect is None:
                continue
            params = LAYOUT_EFFECTS.get((_text(effect, "effectid") or "").strip())
            if params is None:
                continue
            for p in effect.iterchildren("parameter"):
                out = params.get((_text(p, "parameterid") or "").strip())
                if out is None or any(k in curves for k in _outputs(out)):
                    continue  # the first enabled effect of a kind decides
                curves.update(self.parameter(p, out, f"{what} parameter {out}"))
        return curves

    def parameter(self, p: etree._Element, out: str, what: str) -> dict[str, float | _Curve]:
        keys = list(p.iterchildren("keyframe"))
        if not keys:
            value = _child(p, "value")
            if value is None:
                return {}
            v = self.value(value, out, what)
            return {"x": v[0], "y": v[1]} if out == "center" else {out: v}
        # keyframes decide; a static <value> beside them is ignored
        whens = np.array(
            [self.to_number(_text(k, "when"), "when", what=f"{what} keyframe") for k in keys]
        )
        values = np.array([self.value(_child(k, "value"), out, what) for k in keys])
        order = np.argsort(whens, kind="stable")
        whens, values = whens[order], values[order]
        if out == "center":
            return {"x": _Curve(whens, values[:, 0]), "y": _Curve(whens, values[:, 1])}
        return {out: _Curve(whens, values)}

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
    def transition_cut(self, tr: etree._Element, what: str) -> tuple[int, int]:
        """(start, cut frame) of a transition: Premiere's cutPoint, else its alignment."""
        fields = _texts(tr, "start", "end", "cutPoint", "alignment")
        start = self.frame(fields, "start", what=what)
        end = self.frame(fields, "end", what=what)
        if "cutPoint" in fields:
            return start, start + self.frame(fields, "cutPoint", what=what)
        alignment = (fields.get("alignment") or "center").strip().lower()
        if alignment in ("start", "start-black"):
            return start, start
        if alignment in ("end", "end-black"):
            return start, end
        return start, (start + end) // 2

    def track_clips(self, track: etree._Element, n: int) -> list[_Clip]:
        items = [el for el in track if el.tag in ITEM_TAGS]
        clips = []
        for i, el in enumerate(items):
            if el.tag == "transitionitem":
                continue
            fields = _texts(el, "enabled", "start", "end", "in", "name")
            what = f"V{n} {el.tag} {el.get('id') or fields.get('name') or i + 1!r}"
            if (fields.get("enabled") or "").strip().upper() == "FALSE":
                continue
            start = self.frame(fields, "start", what=what)
            end = self.frame(fields, "end", what=what)
            in_frame = int(self.to_number(fields.get("in"), "in", what=what, default=0))
            t0 = start
            if start == -1:
                head = items[i - 1] if i > 0 else None
                if head is None or head.tag != "transitionitem":
                    self.warnings.append(
                        f"{what}: start is -1 with no transition before it; skipped"
                    )
                    continue
                t0, start = self.transition_cut(head, f"{what} head transition")
            if end == -1:
                tail = items[i + 1] if i + 1 < len(items) else None
                if tail is None or tail.tag != "transitionitem":
                    self.warnings.append(f"{what}: end is -1 with no transition after it; skipped")
                    continue
                end = self.transition_cut(tail, f"{what} tail transition")[1]
            if end <= start:
                continue
            clips.append(_Clip(el, el.tag, start, end, t0, in_frame, self.curves(el, what)))
        return clips


def _child(el: etree._Element, tag: str) -> etree._Element | None:
    """First direct child with this tag (cheaper than `find` on a hot path)."""
    return next(el.iterchildren(tag), None)


def _text(el: etree._Element, tag: str) -> str | None:
    child = next(el.iterchildren(tag), None)
    return None if child is None else child.text


def _texts(el: etree._Element, *tags: str) -> dict[str, str | None]:
    """Text of the first direct child of each tag, in one pass over the children."""
    out: dict[str, str | None] = {}
    for child in el.iterchildren(*tags):
        out.setdefault(child.tag, child.text)
    return out


def _outputs(out: str) -> tuple[str, ...]:
    return ("x", "y") if out == "center" else (out,)


def _constant_strings(n: int, value: str) -> pd.Categorical:
    # One category: cheaper to build than n Python strings, and written the same.
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value])


def _sample_frames(n_frames: int, fps: Fraction, rate_hz: Fraction) -> np.ndarray:
    """Frame shown at each t_k = k / rate_hz before the end, floor(t_k * fps), in exact integers."""
    num = fps.numerator * rate_hz.denominator
    den = fps.denominator * rate_hz.numerator
    # t_k < n_frames / fps  <=>  k * num < n_frames * den
    n_samples = -(-n_frames * den // num)
    return (np.arange(n_samples, dtype=np.int64) * num) // den


def parse_timeline_with_info(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    rules: AssetRules = ASSET_RULES,
) -> tuple[pd.DataFrame, TimelineInfo]:
    """Like `parse_timeline`, also returning what was learned about the timeline."""
    path = Path(path)
    if not sample_rate_hz > 0:
        raise ValueError(f"sample_rate_hz must be positive, got {sample_rate_hz}")
    rate_hz = Fraction(sample_rate_hz).limit_denominator(1_000_000)
    root = read_xmeml(path, max_bytes=max_bytes)
    reader = _Reader(path, root, rules)
    seq = reader.top_sequence()
    seq_what = f"sequence {seq.findtext('name') or seq.get('id') or ''!r}".strip()

    chars = seq.find("media/video/format/samplecharacteristics")
    fps = reader.rate(seq, what=seq_what)
    if fps is None and chars is not None:  # rates are inherited; the format's is the fallback
        fps = reader.rate(chars, what=seq_what)
    if fps is None:
        raise reader.fail(f"{seq_what} has no frame rate")
    duration = reader.number(seq, "duration", what=seq_what)
    if duration <= 0:
        raise reader.fail(f"{seq_what} has a non-positive duration ({duration:g} frames)")
    n_frames = int(np.ceil(duration))
    width = height = 0
    if chars is not None:
        width = int(reader.number(chars, "width", what=f"{seq_what} format", default=0))
        height = int(reader.number(chars, "height", what=f"{seq_what} format", default=0))
    if width <= 0 or height <= 0:
        reader.warnings.append(f"{seq_what} has no frame size; assuming 1920x1080")
        width, height = 1920, 1080

    frames = _sample_frames(n_frames, fps, rate_hz)
    source_name = reader.source_video_name()
    n = len(frames)
    columns: dict[str, np.ndarray] = {
        "video_id": _constant_strings(n, path.stem),
        "source_video_name": _constant_strings(n, source_name),
        "time": np.arange(n, dtype=np.float64) * rate_hz.denominator / rate_hz.numerator,
    }
    tracks = seq.findall("media/video/track")
    dropped = []
    for index, track in enumerate(tracks[N_TRACKS:], start=N_TRACKS + 1):
        count = sum(1 for el in track if el.tag in ("clipitem", "generatoritem"))
        dropped.append(f"V{index} ({count} clips)")
    if dropped:
        log.warning("%s: keeps V1..V%d, drops %s", path, N_TRACKS, ", ".join(dropped))

    # Two allocations for all 20 tracks (one per dtype); each column is a contiguous row view.
    n_cont = len(CONTINUOUS_PARAMS)
    ints = np.zeros((N_TRACKS, 2, n), dtype=np.int8)
    floats = np.empty((N_TRACKS, n_cont, n), dtype=np.float64)
    floats[:] = np.array([INACTIVE_VALUES[p] for p in CONTINUOUS_PARAMS])[None, :, None]
    for n_track in range(1, N_TRACKS + 1):
        values = {"active": ints[n_track - 1, 0], "asset": ints[n_track - 1, 1]}
        values.update(zip(CONTINUOUS_PARAMS, floats[n_track - 1], strict=True))
        track = tracks[n_track - 1] if n_track <= len(tracks) else None
        if track is not None and (_text(track, "enabled") or "").strip().upper() != "FALSE":
            _paint_track(reader, track, n_track, frames, values, (width, height))
        for p in TRACK_PARAMS:
            columns[track_column(n_track, p)] = values[p]

    df = pd.DataFrame(columns, columns=list(COLUMNS), copy=False)
    info = TimelineInfo(
        video_id=path.stem,
        source_video_name=source_name,
        sequence_name=seq.findtext("name") or "",
        sequence_id=seq.get("id") or "",
        fps=fps,
        duration_frames=n_frames,
        width=width,
        height=height,
        n_video_tracks=len(tracks),
        n_rows=n,
        dropped_tracks=tuple(dropped),
        warnings=tuple(reader.warnings),
    )
    return df, info


def _paint_track(
    reader: _Reader,
    track: etree._Element,
    n_track: int,
    frames: np.ndarray,
    values: dict[str, np.ndarray],
    seq_size: tuple[int, int],
) -> None:
    """Write each enabled clip's parameters into the samples it covers (later clips win)."""
    for clip in reader.track_clips(track, n_track):
        lo, hi = np.searchsorted(frames, (clip.start, clip.end), side="left")
        if lo == hi:
            continue
        el = clip.element
        file = reader.resolve(_child(el, "file"))
        file_name = ""
        if file is not None:
            file_name = file.findtext("name") or unquote(file.findtext("pathurl") or "")
        # Clips on a track do not overlap in a valid export; where they do, the later one wins.
        overlaps = bool(values["active"][lo:hi].any())
        values["active"][lo:hi] = 1
        values["asset"][lo:hi] = reader.asset_class(
            _text(el, "name") or "",
            file_name,
            n_track,
            clip.kind == "generatoritem",
            _child(el, "sequence") is not None,
        )
        source_frames = None
        src_size = None
        for p in TRACK_PARAMS[2:]:
            curve = clip.curves.get(p)
            if curve is None:
                if overlaps:
                    values[p][lo:hi] = INACTIVE_VALUES[p]
                continue
            if isinstance(curve, _Curve):
                if source_frames is None:  # timeline frame f reads the curve at in + (f - T0)
                    source_frames = frames[lo:hi] - clip.t0 + clip.in_frame
                v = curve.at(source_frames)
            else:
                v = curve
            if p in ("x", "y"):  # Premiere normalizes center by the source size, not the sequence's
                src_size = src_size or reader.source_size(el, seq_size)
                axis = 0 if p == "x" else 1
                v = v * (src_size[axis] / seq_size[axis])
            values[p][lo:hi] = v


def parse_timeline(
    path: str | os.PathLike[str],
    *,
    sample_rate_hz: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    rules: AssetRules = ASSET_RULES,
) -> pd.DataFrame:
    """Parse an FCP7 XML timeline into one row per sample time (183 columns, see `schema`).

    Raises `TimelineError` (naming the file and the reason) for anything that is not a
    readable, safe xmeml timeline. The frame's `attrs["timeline"]` holds `TimelineInfo.as_dict()`.
    """
    df, info = parse_timeline_with_info(
        path, sample_rate_hz=sample_rate_hz, max_bytes=max_bytes, rules=rules
    )
    df.attrs["timeline"] = info.as_dict()
    return df
