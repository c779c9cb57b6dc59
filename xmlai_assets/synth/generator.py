"""Deterministic synthetic Premiere-style timelines, each with the table it means to encode.

A timeline is planned on the timeline axis (clip placement, parameter ramps between timeline
frames, in sequence-frame fractions) and then written the way Premiere writes it: keyframes on
the source axis with a static value beside them, `center` normalized by the source size,
`-1` edges under cross dissolves (with `cutPoint`, or FCP-style with only `alignment`), repeated
files as empty references, disabled clips and tracks. The truth table is computed from the
plan, not from the XML, so parsing the XML back must reproduce it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from lxml import etree

from xmlai_assets.timeline.schema import (
    COLUMNS,
    INACTIVE_VALUES,
    N_TRACKS,
    TRACK_PARAMS,
    track_column,
)

SEQ_W, SEQ_H = 1920, 1080
RATES = ((60, True), (30, True))  # 59.94 and 29.97 fps


@dataclass(frozen=True)
class Ramp:
    """A value moving linearly from `v0` at timeline frame `f0` to `v1` at `f1`, held outside."""

    f0: int
    v0: float
    f1: int
    v1: float

    def at(self, frames: np.ndarray) -> np.ndarray:
        return np.interp(frames, [self.f0, self.f1], [self.v0, self.v1])


Value = float | Ramp


@dataclass(frozen=True)
class Transition:
    start: int
    end: int
    cut: int
    alignment: str
    with_cut_point: bool


@dataclass
class PlannedClip:
    """One clip as meant: where it shows (timeline frames) and what it shows there."""

    track: int
    name: str
    file_name: str | None  # None for a generator
    src_size: tuple[int, int]
    start: int
    end: int
    source_start: int  # source frame shown at `start`
    asset: int
    params: dict[str, Value] = field(default_factory=dict)  # x/y as fractions of the sequence
    enabled: bool = True
    head: Transition | None = None
    tail: Transition | None = None


@dataclass
class SyntheticTimeline:
    name: str
    timebase: int
    ntsc: bool
    duration: int
    clips: list[PlannedClip]
    disabled_tracks: frozenset[int] = frozenset()
    source_video: str = "gameplay_01"
    # The <duration> written into the XML; None writes `duration`. Real exports write 0 or
    # less than their clips, and the timeline still runs to its last clip.
    declared_duration: int | None = None

    @property
    def length(self) -> int:
        """Frames in the timeline: the later of the declared duration and the last clip end."""
        declared = self.duration if self.declared_duration is None else self.declared_duration
        return max([declared, *(c.end for c in self.clips)])

    @property
    def fps(self) -> Fraction:
        return Fraction(self.timebase) * (Fraction(1000, 1001) if self.ntsc else 1)

    def to_xml(self) -> bytes:
        return _write_xml(self)

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / f"{self.name}.xml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_xml())
        return path

    def truth(self, sample_rate_hz: float = 10.0) -> pd.DataFrame:
        """The table this timeline means to encode, sampled at `sample_rate_hz`."""
        hz = Fraction(sample_rate_hz).limit_denominator(1_000_000)
        end_time = Fraction(self.length) / self.fps
        frames = []
        k = 0
        while Fraction(k) / hz < end_time:
            frames.append(int(Fraction(k) / hz * self.fps))  # floor for non-negative values
            k += 1
        f = np.array(frames, dtype=np.int64)
        n = len(f)
        cols: dict[str, object] = {
            "video_id": [self.name] * n,
            "source_video_name": [self.source_video] * n,
            "time": [float(Fraction(i) / hz) for i in range(n)],
        }
        for t in range(1, N_TRACKS + 1):
            vals = {p: np.full(n, float(INACTIVE_VALUES[p])) for p in TRACK_PARAMS}
            if t not in self.disabled_tracks:
                for clip in self.clips:
                    if clip.track != t or not clip.enabled:
                        continue
                    on = (f >= clip.start) & (f < clip.end)
                    vals["active"][on] = 1
                    vals["asset"][on] = clip.asset
                    for p in TRACK_PARAMS[2:]:
                        v = clip.params.get(p, INACTIVE_VALUES[p])
                        vals[p][on] = v.at(f[on]) if isinstance(v, Ramp) else v
            for p in TRACK_PARAMS:
                cols[track_column(t, p)] = (
                    vals[p].astype(np.int8) if p in ("active", "asset") else vals[p]
                )
        return pd.DataFrame(cols, columns=list(COLUMNS))


# -- planning ---------------------------------------------------------------------------------


def generate_timeline(
    seed: int, *, name: str | None = None, seconds: float | None = None
) -> SyntheticTimeline:
    """Plan one timeline from `seed`: the same seed always gives the same timeline."""
    rng = np.random.default_rng(seed)
    timebase, ntsc = RATES[rng.integers(len(RATES))]
    fps = timebase * (1000 / 1001 if ntsc else 1)
    seconds = float(seconds if seconds is not None else rng.uniform(40, 110))
    duration = max(int(seconds * fps), int(fps * 4))
    clips: list[PlannedClip] = []
    game = f"gameplay_{seed % 7 + 1:02d}"
    clips += _plan_gameplay(rng, duration, fps, game)
    clips += _plan_facecam(rng, duration, fps, _free_spans(clips, 2, duration))
    clips += _plan_overlays(rng, duration, fps, track=3, kind="text")
    clips += _plan_overlays(rng, duration, fps, track=4, kind="image")
    disabled: set[int] = set()
    if rng.random() < 0.5:  # a switched-off track whose clips must not count
        disabled.add(5)
        clips += _plan_overlays(rng, duration, fps, track=5, kind="image")
    return SyntheticTimeline(
        name=name or f"synthetic_{seed:04d}",
        timebase=int(timebase),
        ntsc=bool(ntsc),
        duration=duration,
        clips=clips,
        disabled_tracks=frozenset(disabled),
        source_video=game,
    )


def _ramp_or_const(rng, start: int, end: int, base: float, delta: float) -> Value:
    """A constant, or a ramp whose keys may lie outside the clip (trimmed after keying)."""
    if rng.random() < 0.5:
        return float(base)
    length = end - start
    f0 = start + int(rng.integers(-length // 4, length // 2))
    f1 = f0 + int(rng.integers(5, max(6, length // 2)))
    return Ramp(f0, float(base), f1, float(round(base + delta, 4)))


def _layout(rng, start: int, end: int) -> tuple[dict[str, Value], dict[str, Value] | None]:
    """V1 parameters for one segment, plus the V2 partner for a side-by-side layout."""
    kind = rng.choice(["full", "zoom", "side"], p=[0.4, 0.35, 0.25])
    if kind == "full":
        return {"scale": 100.0}, None
    if kind == "zoom":
        return {"scale": _ramp_or_const(rng, start, end, 100.0, float(rng.integers(8, 40)))}, None
    crop = float(rng.integers(15, 30))
    left = {"scale": 100.0, "x": -0.25, "crop_l": crop, "crop_r": crop}
    right = {"scale": 100.0, "x": 0.25, "crop_l": crop, "crop_r": crop}
    return left, right


def _plan_gameplay(rng, duration: int, fps: float, game: str) -> list[PlannedClip]:
    clips: list[PlannedClip] = []
    pos = 0
    prev: PlannedClip | None = None
    fade_in = rng.random() < 0.3
    while pos < duration - int(fps):
        length = min(int(rng.uniform(5, 20) * fps), duration - pos)
        start, end = pos, pos + length
        params, partner = _layout(rng, start, end)
        clip = PlannedClip(
            track=1,
            name=f"{game}.mp4",
            file_name=f"{game}.mp4",
            src_size=(SEQ_W, SEQ_H),
            start=start,
            end=end,
            source_start=int(rng.integers(0, 5000)),
            asset=0,
            params=params,
        )
        if prev is None and fade_in:  # fade from black: start -1 under a start-black transition
            length_t = int(rng.integers(5, 15)) * 2
            clip.head = Transition(start, start + length_t, start, "start-black", True)
        elif prev is not None and rng.random() < 0.4 and min(prev.end - prev.start, length) > 40:
            half = int(rng.integers(5, 15))
            with_cut = bool(rng.random() < 0.6)
            tr = Transition(start - half, start + half, start, "center", with_cut)
            prev.tail = tr
            clip.head = tr
        clips.append(clip)
        if partner is not None:
            clips.append(
                PlannedClip(
                    track=2,
                    name="facecam.mov",
                    file_name="facecam.mov",
                    src_size=(SEQ_W, SEQ_H),
                    start=start,
                    end=end,
                    source_start=int(rng.integers(0, 5000)),
                    asset=1,
                    params=partner,
                )
            )
        prev = clip
        pos = end
    return clips


def _free_spans(clips: list[PlannedClip], track: int, duration: int) -> list[tuple[int, int]]:
    taken = sorted((c.start, c.end) for c in clips if c.track == track)
    spans, pos = [], 0
    for s, e in taken:
        if s > pos:
            spans.append((pos, s))
        pos = max(pos, e)
    if pos < duration:
        spans.append((pos, duration))
    return spans


def _plan_facecam(
    rng, duration: int, fps: float, spans: list[tuple[int, int]]
) -> list[PlannedClip]:
    """Picture-in-picture face cam in a corner (a 1280x720 source scaled down), in free spans."""
    clips = []
    for span_start, span_end in spans:
        pos = span_start + int(rng.uniform(0, 3) * fps)
        while pos < span_end - int(2 * fps):
            length = min(int(rng.uniform(6, 25) * fps), span_end - pos)
            scale = float(rng.integers(25, 40))
            sx, sy = rng.choice([-1, 1]), rng.choice([-1, 1])
            # keep the scaled source inside the frame with a margin
            x = sx * round(0.5 - scale / 100 * 1280 / SEQ_W / 2 - 0.03, 4)
            y = sy * round(0.5 - scale / 100 * 720 / SEQ_H / 2 - 0.03, 4)
            tag = rng.random() < 0.15
            clips.append(
                PlannedClip(
                    track=2,
                    name="facecam Class7.mov" if tag else "facecam.mov",
                    file_name="facecam_720p.mov",
                    src_size=(1280, 720),
                    start=pos,
                    end=pos + length,
                    source_start=int(rng.integers(0, 9000)),
                    asset=7 if tag else 1,
                    params={"scale": scale, "x": float(x), "y": float(y)},
                    enabled=bool(rng.random() > 0.15),
                )
            )
            pos += length + int(rng.uniform(1, 8) * fps)
    return clips


def _plan_overlays(rng, duration: int, fps: float, *, track: int, kind: str) -> list[PlannedClip]:
    """Short text or image overlays, some sliding in along x."""
    clips = []
    pos = int(rng.uniform(1, 10) * fps)
    while pos < duration - int(3 * fps):
        length = int(rng.uniform(2, 6) * fps)
        end = min(pos + length, duration)
        y = float(rng.choice([-0.35, 0.0, 0.35]))
        x = _ramp_or_const(
            rng, pos, end, float(rng.choice([-0.3, 0.0, 0.3])), float(rng.uniform(-0.2, 0.2))
        )
        if kind == "text":
            generator = rng.random() < 0.5
            name = (
                "Color Matte"
                if generator
                else ["Title 01", "Caption", "subtitle en", "テキスト"][rng.integers(4)]
            )
            clip = PlannedClip(
                track=track,
                name=name,
                file_name=None if generator else f"{name}.prtl",
                src_size=(SEQ_W, SEQ_H),
                start=pos,
                end=end,
                source_start=0,
                asset=2,
                params={"scale": 100.0, "x": x, "y": y},
            )
        else:
            ext = ["png", "jpg", "psd", "webp"][rng.integers(4)]
            clip = PlannedClip(
                track=track,
                name=f"logo_{rng.integers(1, 9)}.{ext}",
                file_name=f"logo.{ext}",
                src_size=(800, 800),
                start=pos,
                end=end,
                source_start=0,
                asset=3,
                params={"scale": float(rng.integers(20, 60)), "x": x, "y": y},
            )
        clip.enabled = bool(rng.random() > 0.1)
        clips.append(clip)
        pos = end + int(rng.uniform(3, 15) * fps)
    return clips


# -- writing ----------------------------------------------------------------------------------


def _sub(
    parent: etree._Element, tag: str, text: object | None = None, **attrs: str
) -> etree._Element:
    el = etree.SubElement(parent, tag, **attrs)
    if text is not None:
        el.text = str(text)
    return el


def _rate(parent: etree._Element, tl: SyntheticTimeline) -> None:
    rate = _sub(parent, "rate")
    _sub(rate, "timebase", tl.timebase)
    _sub(rate, "ntsc", "TRUE" if tl.ntsc else "FALSE")


def _num(v: float) -> str:
    return repr(float(v)) if v != int(v) else str(int(v))


def _parameter(effect, pid: str, value: Value, clip: PlannedClip, t0: int, in_frame: int, to_xml):
    """A parameter as Premiere writes it: keys on the source axis, a static value beside them."""
    p = _sub(effect, "parameter", authoringApp="PremierePro")
    _sub(p, "parameterid", pid)
    _sub(p, "name", {"scale": "Scale", "center": "Center"}.get(pid, pid))

    def put(parent, v):
        if pid == "center":
            el = _sub(parent, "value")
            _sub(el, "horiz", _num(to_xml(v[0], 0)))
            _sub(el, "vert", _num(to_xml(v[1], 1)))
        else:
            _sub(parent, "value", _num(v))

    if isinstance(value, tuple) and not any(isinstance(v, Ramp) for v in value):
        put(p, value)
        return
    if not isinstance(value, tuple) and not isinstance(value, Ramp):
        put(p, value)
        return
    # keyed: write the static value (the last key's) first, then keys at the ramp's frames
    ramps = value if isinstance(value, tuple) else (value,)
    key_frames = sorted({f for r in ramps if isinstance(r, Ramp) for f in (r.f0, r.f1)})

    def value_at(f):
        vs = [float(r.at(np.array([f]))[0]) if isinstance(r, Ramp) else r for r in ramps]
        return tuple(vs) if isinstance(value, tuple) else vs[0]

    put(p, value_at(key_frames[-1]))
    for f in key_frames:
        key = _sub(p, "keyframe")
        _sub(key, "when", in_frame + (f - t0))
        put(key, value_at(f))


def _write_xml(tl: SyntheticTimeline) -> bytes:
    root = etree.Element("xmeml", version="4")
    seq = _sub(root, "sequence", id="sequence-1")
    _sub(seq, "uuid", str(uuid.uuid5(uuid.NAMESPACE_URL, tl.name)))
    _sub(seq, "duration", tl.duration if tl.declared_duration is None else tl.declared_duration)
    _rate(seq, tl)
    _sub(seq, "name", tl.name)
    video = _sub(_sub(seq, "media"), "video")
    chars = _sub(_sub(video, "format"), "samplecharacteristics")
    _rate(chars, tl)
    _sub(chars, "width", SEQ_W)
    _sub(chars, "height", SEQ_H)
    written_files: dict[str, str] = {}
    n_tracks = max([c.track for c in tl.clips] + [3])
    clip_id = 0
    for t in range(1, n_tracks + 1):
        track = _sub(video, "track")
        on_track = sorted((c for c in tl.clips if c.track == t), key=lambda c: c.start)
        done_transitions: set[Transition] = set()
        for clip in on_track:
            if clip.head is not None and clip.head not in done_transitions:
                _transition(track, clip.head, tl)
                done_transitions.add(clip.head)
            clip_id += 1
            _clip(track, clip, tl, f"clipitem-{clip_id}", written_files)
            if clip.tail is not None:
                _transition(track, clip.tail, tl)
                done_transitions.add(clip.tail)
        _sub(track, "enabled", "FALSE" if t in tl.disabled_tracks else "TRUE")
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False, pretty_print=True)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE xmeml>\n' + body


def _transition(track, tr: Transition, tl: SyntheticTimeline) -> None:
    el = _sub(track, "transitionitem")
    _sub(el, "start", tr.start)
    _sub(el, "end", tr.end)
    _sub(el, "alignment", tr.alignment)
    if tr.with_cut_point:
        _sub(el, "cutPoint", tr.cut - tr.start)
    _rate(el, tl)
    effect = _sub(el, "effect")
    _sub(effect, "name", "Cross Dissolve")
    _sub(effect, "effectid", "Cross Dissolve")
    _sub(effect, "effecttype", "transition")
    _sub(effect, "mediatype", "video")


def _clip(track, clip: PlannedClip, tl: SyntheticTimeline, cid: str, written_files: dict) -> None:
    generator = clip.file_name is None
    el = _sub(track, "generatoritem" if generator else "clipitem", id=cid)
    _sub(el, "name", clip.name)
    _sub(el, "enabled", "TRUE" if clip.enabled else "FALSE")
    _rate(el, tl)
    # T0: the clip's start, or the head transition's start when the start lies under it
    t0 = clip.head.start if clip.head is not None else clip.start
    in_frame = clip.source_start - (clip.start - t0)
    out_end = clip.tail.end if clip.tail is not None else clip.end
    _sub(el, "start", -1 if clip.head is not None else clip.start)
    _sub(el, "end", -1 if clip.tail is not None else clip.end)
    _sub(el, "in", in_frame)
    _sub(el, "out", in_frame + (out_end - t0))
    if generator:
        effect = _sub(el, "effect")
        _sub(effect, "name", "Color")
        _sub(effect, "effectid", "Color")
        _sub(effect, "effecttype", "generator")
    else:
        fid = written_files.get(clip.file_name)
        if fid is not None:
            _sub(el, "file", id=fid)  # later occurrences are empty references
        else:
            fid = written_files[clip.file_name] = f"file-{len(written_files) + 1}"
            file = _sub(el, "file", id=fid)
            _sub(file, "name", clip.file_name)
            _sub(
                file,
                "pathurl",
                "file://localhost/Volumes/Media/" + clip.file_name.replace(" ", "%20"),
            )
            _rate(file, tl)
            chars = _sub(_sub(_sub(file, "media"), "video"), "samplecharacteristics")
            _sub(chars, "width", clip.src_size[0])
            _sub(chars, "height", clip.src_size[1])

    p = clip.params

    # center in Premiere's units: a fraction of the SOURCE size
    def to_xml(v: float, axis: int) -> float:
        return v * (SEQ_W, SEQ_H)[axis] / clip.src_size[axis]

    if any(k in p for k in ("scale", "x", "y")):
        effect = _sub(_sub(el, "filter"), "effect")
        _sub(effect, "name", "Basic Motion")
        _sub(effect, "effectid", "basic")
        _sub(effect, "effectcategory", "motion")
        _sub(effect, "effecttype", "motion")
        _parameter(effect, "scale", p.get("scale", 100.0), clip, t0, in_frame, to_xml)
        _parameter(effect, "center", (p.get("x", 0.0), p.get("y", 0.0)), clip, t0, in_frame, to_xml)
    if any(k in p for k in ("crop_l", "crop_r", "crop_t", "crop_b")):
        effect = _sub(_sub(el, "filter"), "effect")
        _sub(effect, "name", "Beschneiden")  # a localized name: matching must use effectid
        _sub(effect, "effectid", "crop")
        for pid, key in (
            ("left", "crop_l"),
            ("right", "crop_r"),
            ("top", "crop_t"),
            ("bottom", "crop_b"),
        ):
            _parameter(effect, pid, p.get(key, 0.0), clip, t0, in_frame, to_xml)
