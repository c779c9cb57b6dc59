"""Real third-party exports (provenance in ../shared/external_xml/SOURCES.md).

`active` and the row count are checked against a small reading of the XML written here with the
standard library, independent of the parser: enabled tracks and clips, `-1` edges from the
adjacent transition, NTSC rates, and the timeline's length as the later of `<duration>` and the
last clip end on any track.
"""

import xml.etree.ElementTree as ET
from fractions import Fraction

import numpy as np
import pytest

from xmlai_assets.timeline import COLUMNS, parse_timeline, parse_timeline_with_info, track_column

FILES = [
    "Adobe Premiere CC Prg6.xml",
    "DNPR63700211 Spor i snø.xml",
    "empty_name_tags.xml",
    "premiere_enable_property.xml",
    "premiere_example.xml",
    "test_XML_export_filtered_premiere.xml",
    "test_XML_export_resolve.xml",
]
ITEMS = ("clipitem", "generatoritem", "transitionitem")


def _off(el) -> bool:
    return (el.findtext("enabled") or "").strip().upper() == "FALSE"


def _cut(tr) -> int:
    start, end = int(tr.findtext("start")), int(tr.findtext("end"))
    if tr.find("cutPoint") is not None:
        return start + int(tr.findtext("cutPoint"))
    alignment = (tr.findtext("alignment") or "center").strip().lower()
    return {"start": start, "start-black": start, "end": end, "end-black": end}.get(
        alignment, (start + end) // 2
    )


def _clips(track) -> list[tuple[int | None, int | None, bool]]:
    """(start, end, enabled) of each clip, a -1 edge taken from the transition beside it
    (None when there is none)."""
    items = [el for el in track if el.tag in ITEMS]
    out = []
    for i, el in enumerate(items):
        if el.tag == "transitionitem":
            continue
        start, end = int(el.findtext("start")), int(el.findtext("end"))
        if start == -1:
            start = _cut(items[i - 1]) if i and items[i - 1].tag == "transitionitem" else None
        if end == -1:
            after = items[i + 1] if i + 1 < len(items) else None
            end = _cut(after) if after is not None and after.tag == "transitionitem" else None
        out.append((start, end, not _off(el)))
    return out


def independent_reading(path, rate_hz: int = 10) -> tuple[int, dict[int, np.ndarray]]:
    """(row count, {track: active per row}) of a file's top-level sequence."""
    root = ET.parse(path).getroot()
    parents = {child: parent for parent in root.iter() for child in parent}

    def nested(el) -> bool:
        while el in parents:
            el = parents[el]
            if el.tag in ("clipitem", "generatoritem"):
                return True
        return False

    seq = next(s for s in root.iter("sequence") if len(s) and not nested(s))
    fps = Fraction(int(seq.findtext("rate/timebase")))
    if seq.findtext("rate/ntsc", "").strip().upper() == "TRUE":
        fps *= Fraction(1000, 1001)
    video = seq.findall("media/video/track")
    audio = seq.findall("media/audio/track")
    ends = [end for t in video + audio for _, end, _ in _clips(t) if end is not None]
    length = max([int(seq.findtext("duration") or 0), *ends])
    rows = 0
    while Fraction(rows, rate_hz) < Fraction(length) / fps:
        rows += 1
    frames = np.array([int(Fraction(k, rate_hz) * fps) for k in range(rows)])
    active = {}
    for n, track in enumerate(video[:20], start=1):
        on = np.zeros(rows, dtype=bool)
        if not _off(track):
            for start, end, enabled in _clips(track):
                if enabled and start is not None and end is not None:
                    on |= (frames >= start) & (frames < end)
        active[n] = on
    return rows, active


@pytest.mark.parametrize("name", FILES)
def test_every_real_export_is_read_whole(external_xml, name):
    df, info = parse_timeline_with_info(external_xml / name)
    rows, active = independent_reading(external_xml / name)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == rows == info.n_rows
    assert info.length_frames >= info.declared_duration_frames
    for n in range(1, 21):
        want = active.get(n, np.zeros(rows, dtype=bool))
        np.testing.assert_array_equal(df[track_column(n, "active")].to_numpy() == 1, want, f"V{n}")
    values = df.iloc[:, 3:].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert df.filter(like="_asset").isin(range(10)).all().all()
    assert df.filter(like="_active").to_numpy().sum() > 0


@pytest.mark.parametrize("name", FILES)
def test_every_real_export_names_its_source_video(external_xml, name):
    df, info = parse_timeline_with_info(external_xml / name)
    assert info.source_video_name not in ("", "unknown")
    assert (df["source_video_name"] == info.source_video_name).all()


def test_premiere_example_runs_to_its_last_clip_not_its_declared_duration(external_xml):
    # <duration>636</duration>, but clips run to frame 1258 at 30 fps: 420 rows at 10 Hz
    _, info = parse_timeline_with_info(external_xml / "premiere_example.xml")
    assert info.declared_duration_frames == 636
    assert info.length_frames == 1258
    assert info.n_rows == 420


@pytest.fixture(scope="module")
def prg6(external_xml):
    # 25 fps sampled at 25 Hz: sample k shows timeline frame k
    return parse_timeline(external_xml / "Adobe Premiere CC Prg6.xml", sample_rate_hz=25.0)


def test_prg6_v3_scale_ramps_121_to_133_between_frames_7967_and_8037(prg6):
    scale = prg6["target_v3_scale"].to_numpy()
    assert scale[7965] == pytest.approx(121)  # before the first key the first key's value holds
    assert scale[7967] == pytest.approx(121)
    assert scale[8002] == pytest.approx(127)
    assert scale[8037] == pytest.approx(133)
    assert scale[8040] == pytest.approx(133)
    assert np.all(np.diff(scale[7967:8038]) > 0)


def test_prg6_v3_centre_moves_from_0_0435_to_0_between_frames_4841_and_4864(prg6):
    y = prg6["target_v3_y"].to_numpy()
    assert y[4841] == pytest.approx(0.0435, abs=5e-5)
    assert y[4864] == pytest.approx(0.0, abs=1e-9)
    assert 0 < y[4852] < 0.0435


def test_prg6_disabled_clips_are_not_active(prg6):
    # clipitem-82 (V2, 15180..15384) and clipitem-358 (V5 png, 25198..25236) are disabled
    assert not prg6["target_v2_active"].to_numpy()[15180:15384].any()
    assert not prg6["target_v5_active"].to_numpy()[25198:25236].any()


def test_fcp7_keyframes_without_static_value(external_xml):
    df = parse_timeline(external_xml / "DNPR63700211 Spor i snø.xml", sample_rate_hz=25.0)
    y = df["target_v1_y"].to_numpy()
    assert y.min() < -0.5  # the keyed slide from vert -0.99 is there, not a constant 0


def test_resolve_export_and_its_transition(external_xml):
    df, info = parse_timeline_with_info(external_xml / "test_XML_export_resolve.xml")
    assert info.n_video_tracks == 5 and float(info.fps) == 24
    assert not info.warnings


def test_center_of_a_720p_source_is_rescaled_to_the_1080p_sequence(external_xml):
    # clipitem-49111 on V13 (frames 8049..8202): center (0.128681, -0.0888383) of a 1280x720 source
    df = parse_timeline(external_xml / "test_XML_export_filtered_premiere.xml", sample_rate_hz=24.0)
    assert df["target_v13_active"].iloc[8100] == 1
    assert df["target_v13_x"].iloc[8100] == pytest.approx(0.128681 * 1280 / 1920)
    assert df["target_v13_y"].iloc[8100] == pytest.approx(-0.0888383 * 720 / 1080)
