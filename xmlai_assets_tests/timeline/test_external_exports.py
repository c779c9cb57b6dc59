"""Real third-party exports (provenance in ../shared/external_xml/SOURCES.md)."""

import numpy as np
import pytest

from xmlai_assets.timeline import COLUMNS, parse_timeline, parse_timeline_with_info

FILES = [
    "Adobe Premiere CC Prg6.xml",
    "DNPR63700211 Spor i snø.xml",
    "empty_name_tags.xml",
    "premiere_enable_property.xml",
    "premiere_example.xml",
    "test_XML_export_filtered_premiere.xml",
    "test_XML_export_resolve.xml",
]


@pytest.mark.parametrize("name", FILES)
def test_every_real_export_parses(external_xml, name):
    df, info = parse_timeline_with_info(external_xml / name)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == int(np.ceil(info.duration_frames / float(info.fps) * 10 - 1e-9))
    values = df.iloc[:, 3:].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert df.filter(like="_asset").isin(range(10)).all().all()
    assert df.filter(like="_active").to_numpy().sum() > 0


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
