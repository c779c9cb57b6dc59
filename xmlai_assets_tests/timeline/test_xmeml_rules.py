"""One test per rule of docs/xmeml.md and per mistake of the previous converter.

Unless a test says otherwise the sequence runs at 10 fps and is sampled at 10 Hz, so sample k
shows frame k.
"""

import numpy as np
import pytest

from xmlai_assets.timeline import (
    COLUMNS,
    TimelineError,
    parse_timeline,
    parse_timeline_with_info,
)
from xmlai_assets_tests.timeline.xmeml_builder import (
    center,
    clip,
    crop,
    document,
    effect,
    file,
    motion,
    param,
    track,
    transition,
    write,
)


def parse(tmp_path, *tracks, **kw):
    sample_rate_hz = kw.pop("sample_rate_hz", 10.0)
    return parse_timeline(write(tmp_path, document(*tracks, **kw)), sample_rate_hz=sample_rate_hz)


def col(df, track, p):
    return df[f"target_v{track}_{p}"].to_numpy()


# -- schema and time axis -------------------------------------------------------------------------


def test_columns_are_the_master_schema_in_order(tmp_path):
    df = parse(tmp_path, track(clip(0, 10)))
    assert list(df.columns) == list(COLUMNS)
    assert len(COLUMNS) == 183
    assert COLUMNS[3:12] == tuple(
        f"target_v1_{p}"
        for p in ("active", "asset", "scale", "x", "y", "crop_l", "crop_r", "crop_t", "crop_b")
    )
    assert df["video_id"].iloc[0] == "timeline"


def test_one_row_per_sample_before_the_end(tmp_path):
    # 95 frames at 10 fps end at 9.5 s: samples 0.0 .. 9.4 at 10 Hz
    df = parse(tmp_path, track(), duration=95)
    assert len(df) == 95
    np.testing.assert_allclose(df["time"], np.arange(95) / 10)
    # at 4 Hz: t_k = k / 4 < 9.5 -> k = 0..37
    df4 = parse(tmp_path, track(), duration=95, sample_rate_hz=4.0)
    assert len(df4) == 38


def test_ntsc_29_97_is_not_30(tmp_path):
    # 3000 frames at 29.97 fps end at 100.1 s, so there is a sample at t = 100.0 s,
    # which shows frame floor(100 * 29.97) = 2997. At a true 30 fps neither would exist.
    df = parse(tmp_path, track(clip(2997, 3000)), duration=3000, timebase=30, ntsc=True)
    assert len(df) == 1001
    assert col(df, 1, "active")[1000] == 1
    assert col(df, 1, "active")[:1000].sum() == 0


def test_ntsc_59_94_sample_frames(tmp_path):
    # the sample at 50.0 s shows frame floor(50 * 59.94) = 2997; at 60 fps it would be 3000
    df = parse(tmp_path, track(clip(2997, 2998)), duration=3600, timebase=60, ntsc=True)
    active = col(df, 1, "active")
    assert active[500] == 1 and active.sum() == 1
    info = parse_timeline_with_info(tmp_path / "timeline.xml")[1]
    assert float(info.fps) == pytest.approx(59.94006, rel=1e-6)


def test_rate_is_inherited_from_the_format_when_the_sequence_has_none(tmp_path):
    df = parse(tmp_path, track(), duration=300, timebase=30, ntsc=True, seq_rate=False)
    assert len(df) == 101  # 300 frames at 29.97 fps = 10.01 s


def test_placement_is_half_open(tmp_path):
    df = parse(tmp_path, track(clip(10, 20)), duration=30)
    assert np.flatnonzero(col(df, 1, "active")).tolist() == list(range(10, 20))


def test_inactive_tracks_hold_the_placeholder_values(tmp_path):
    df = parse(tmp_path, track(clip(0, 5, motion(param("scale", 50)), crop(left=10))), duration=10)
    for t in (1, 2, 20):
        rows = slice(5, 10) if t == 1 else slice(None)
        assert (col(df, t, "active")[rows] == 0).all()
        assert (col(df, t, "asset")[rows] == 0).all()
        assert (col(df, t, "scale")[rows] == 100).all()
        for p in ("x", "y", "crop_l", "crop_r", "crop_t", "crop_b"):
            assert (col(df, t, p)[rows] == 0).all()


# -- -1 edges under transitions (mistake 3) -------------------------------------------------------


def test_minus_one_edges_meet_at_the_cut_point(tmp_path):
    a = clip(0, -1, motion(param("scale", 50)), name="a.mov")
    b = clip(-1, 80, motion(param("scale", 70)), name="b.mov", in_=100)
    df = parse(tmp_path, track(a, transition(40, 50, cut_point=4), b), duration=90)
    scale, active = col(df, 1, "scale"), col(df, 1, "active")
    assert (scale[:44] == 50).all(), "the outgoing clip holds the track up to the cut"
    assert (scale[44:80] == 70).all(), "the incoming clip starts at the cut, not at frame 0"
    assert active[:80].all() and not active[80:].any()


@pytest.mark.parametrize(
    ("alignment", "cut"),
    [("center", 45), ("start", 40), ("start-black", 40), ("end", 50), ("end-black", 50)],
)
def test_minus_one_edges_from_alignment_without_cut_point(tmp_path, alignment, cut):
    a = clip(0, -1, motion(param("scale", 50)), name="a.mov")
    b = clip(-1, 80, motion(param("scale", 70)), name="b.mov")
    tr = transition(40, 50, alignment=alignment)
    df = parse(tmp_path, track(a, tr, b), duration=90)
    scale = col(df, 1, "scale")
    assert (scale[:cut] == 50).all() and (scale[cut:80] == 70).all()


def test_end_minus_one_clip_does_not_vanish(tmp_path):
    a = clip(10, -1, name="a.mov")
    df = parse(tmp_path, track(a, transition(30, 40, alignment="end-black")), duration=50)
    assert np.flatnonzero(col(df, 1, "active")).tolist() == list(range(10, 40))


# -- keyframes (mistakes 1 and 2) -----------------------------------------------------------------


def test_keyframes_win_over_the_static_value(tmp_path):
    scale = param("scale", 133, keys=[(0, 121), (70, 133)])
    df = parse(tmp_path, track(clip(0, 80, motion(scale))), duration=80)
    s = col(df, 1, "scale")
    assert s[0] == 121 and s[35] == pytest.approx(127) and s[75] == 133


def test_when_counts_on_the_source_axis(tmp_path):
    # clip at 100 plays source from 1000: frame f reads when = 1000 + (f - 100)
    scale = param("scale", 999, keys=[(1010, 100), (1020, 200)])
    df = parse(tmp_path, track(clip(100, 140, motion(scale), in_=1000)), duration=150)
    s = col(df, 1, "scale")
    assert s[100] == 100 and s[115] == pytest.approx(150) and s[120] == 200 and s[139] == 200


def test_minus_one_start_reads_keys_from_the_transition_start(tmp_path):
    # T0 is the head transition's start (40); the incoming clip shows from the cut (45)
    a = clip(0, -1, name="a.mov")
    keys = param("scale", 0, keys=[(200, 0), (210, 100)])
    b = clip(-1, 80, motion(keys), name="b.mov", in_=200)
    df = parse(tmp_path, track(a, transition(40, 50, cut_point=5), b), duration=90)
    s = col(df, 1, "scale")
    assert s[45] == pytest.approx(50)  # when = 200 + (45 - 40) = 205
    assert s[50] == pytest.approx(100)


def test_keys_outside_the_clip_interpolate_across_and_hold(tmp_path):
    # keys at 990 and 1010 straddle in = 1000; after the last key the value holds
    scale = param("scale", keys=[(990, 0), (1010, 100)])
    df = parse(tmp_path, track(clip(0, 30, motion(scale), in_=1000)), duration=30)
    s = col(df, 1, "scale")
    assert s[0] == pytest.approx(50) and s[5] == pytest.approx(75) and (s[10:30] == 100).all()
    # all keys before the clip: the last key holds throughout
    before = param("scale", keys=[(900, 10), (950, 60)])
    df = parse(tmp_path, track(clip(0, 30, motion(before), in_=1000)), duration=30)
    assert (col(df, 1, "scale")[:30] == 60).all()


def test_a_single_keyframe_is_a_constant(tmp_path):
    scale = param("scale", 10, keys=[(5, 80)])
    df = parse(tmp_path, track(clip(0, 20, motion(scale))), duration=20)
    assert (col(df, 1, "scale") == 80).all()


def test_keyframed_center_and_crop(tmp_path):
    c = center(keys=[(0, (0.0, 0.0)), (10, (0.2, -0.4))])
    cr = effect("crop", param("left", keys=[(0, 0), (10, 50)]), param("right", 5))
    df = parse(tmp_path, track(clip(0, 20, motion(c), cr)), duration=20)
    assert col(df, 1, "x")[5] == pytest.approx(0.1)
    assert col(df, 1, "y")[5] == pytest.approx(-0.2)
    assert col(df, 1, "crop_l")[5] == pytest.approx(25)
    assert (col(df, 1, "crop_r")[:20] == 5).all()


def test_bezier_keys_are_interpolated_linearly(tmp_path):
    # documented simplification: FCPCurve keys are read as linear segments
    scale = param("scale", keys=[(0, 100), (10, 200)], interpolation="FCPCurve")
    df = parse(tmp_path, track(clip(0, 20, motion(scale))), duration=20)
    assert col(df, 1, "scale")[3] == pytest.approx(130)


# -- effects, enabled flags, source sizes (mistakes 5 and 6) --------------------------------------


def test_effects_match_on_effectid_not_on_localized_name(tmp_path):
    localized = motion(param("scale", 40), name="Bewegung")
    impostor = effect("gaussianblur", param("scale", 300), name="Basic Motion")
    df = parse(tmp_path, track(clip(0, 10, impostor, localized)), duration=10)
    assert (col(df, 1, "scale") == 40).all()


def test_disabled_clip_is_not_active(tmp_path):
    df = parse(tmp_path, track(clip(0, 10), clip(10, 20, enabled=False, name="b.mov")), duration=20)
    assert col(df, 1, "active").tolist() == [1] * 10 + [0] * 10


def test_disabled_track_is_not_active(tmp_path):
    df = parse(tmp_path, track(clip(0, 10)), track(clip(0, 10), enabled=False), duration=10)
    assert col(df, 1, "active").all() and not col(df, 2, "active").any()


def test_disabled_filter_has_no_effect(tmp_path):
    df = parse(tmp_path, track(clip(0, 10, crop(left=30, enabled=False))), duration=10)
    assert (col(df, 1, "crop_l") == 0).all()


def test_center_is_converted_from_source_to_sequence_fractions(tmp_path):
    src = file("f1", "cam.mov", size=(1280, 720))
    df = parse(tmp_path, track(clip(0, 10, motion(center(0.3, -0.3)), file_xml=src)), duration=10)
    assert col(df, 1, "x")[0] == pytest.approx(0.2)  # 0.3 * 1280 / 1920
    assert col(df, 1, "y")[0] == pytest.approx(-0.2)  # -0.3 * 720 / 1080


def test_unknown_source_size_is_the_sequence_size(tmp_path):
    src = file("f1", "cam.mov", size=None)
    df = parse(tmp_path, track(clip(0, 10, motion(center(0.3, -0.3)), file_xml=src)), duration=10)
    assert col(df, 1, "x")[0] == pytest.approx(0.3)


def test_empty_file_reference_resolves_to_the_full_file(tmp_path):
    full = file("file-7", "logo.png", size=(960, 540))
    ref = '<file id="file-7"/>'
    t = track(
        clip(0, 10, file_xml=full, name="first"),
        clip(10, 20, motion(center(0.5, 0.5)), file_xml=ref, name="second"),
    )
    df = parse(tmp_path, t, duration=20)
    assert col(df, 1, "asset")[15] == 3  # the image extension comes from the referenced file
    assert col(df, 1, "x")[15] == pytest.approx(0.25)  # and so does its source size


# -- document structure ---------------------------------------------------------------------------


def test_nested_sequence_is_one_clip_of_class_5_on_its_track(tmp_path):
    nest = (
        "<sequence id='nest-1'><name>Nest</name><duration>50</duration><rate><timebase>10</timebase></rate>"
        f"<media><video>{track(clip(0, 50, name='inner.mov'))}{track(clip(0, 50, name='inner2.mov'))}"
        f"{track(clip(0, 50, name='inner3.mov'))}</video></media></sequence>"
    )
    outer = f"<clipitem id='c'><name>Nest</name><start>5</start><end>15</end><in>0</in><out>10</out>{nest}</clipitem>"
    df, info = parse_timeline_with_info(write(tmp_path, document(track(outer), duration=20)))
    assert info.sequence_name == "Sequence" and info.n_video_tracks == 1
    assert col(df, 1, "asset")[5:15].tolist() == [5] * 10
    assert not col(df, 2, "active").any()


def test_top_level_sequence_inside_a_project_bin(tmp_path):
    body = (
        document(track(clip(0, 10)), duration=10)
        .split('<xmeml version="4">')[1]
        .replace("</xmeml>", "")
    )
    text = f'<xmeml version="5"><project><name>P</name><children><bin><children>{body}</children></bin></children></project></xmeml>'
    df = parse_timeline(write(tmp_path, text))
    assert len(df) == 10 and col(df, 1, "active").all()


def test_several_top_level_sequences_choose_the_first_and_say_so(tmp_path):
    from xmlai_assets_tests.timeline.xmeml_builder import sequence

    text = (
        '<xmeml version="5">'
        + sequence(track(clip(0, 10)), duration=10, name="First")
        + sequence(track(), duration=30, name="Second")
        + "</xmeml>"
    )
    df, info = parse_timeline_with_info(write(tmp_path, text))
    assert info.sequence_name == "First" and len(df) == 10
    assert any("2 top-level sequences" in w for w in info.warnings)


def test_more_than_20_tracks_keep_v1_to_v20_and_report_the_rest(tmp_path):
    tracks = [track(clip(0, 10, name=f"t{i}.mov")) for i in range(22)]
    df, info = parse_timeline_with_info(write(tmp_path, document(*tracks, duration=10)))
    assert len(df.columns) == 183 and col(df, 20, "active").all()
    assert info.dropped_tracks == ("V21 (1 clips)", "V22 (1 clips)")


def test_source_video_name_is_the_first_video_files_decoded_stem(tmp_path):
    f = file("f1", "x.mov", path="file://localhost/Volumes/A%20B/Clip%20%234%20H%c3%b8st.mov")
    df = parse(tmp_path, track(clip(0, 10, file_xml=f)), duration=10)
    assert df["source_video_name"].iloc[0] == "Clip #4 Høst"
    nofile = parse(tmp_path, track(clip(0, 10, tag="generatoritem", file_xml="")), duration=10)
    assert nofile["source_video_name"].iloc[0] == "unknown"


def test_source_video_needs_no_media_child_and_follows_file_references(tmp_path):
    # FCP7 and xmeml v3/v4 describe a file without <media>; the track says it is video.
    # The first video clipitem plays a reference to a file written in full on an audio track.
    full = file("f9", "a.wav", size=None, path="file://localhost/Media/Interview%2001.mov")
    video = track(clip(0, 10, file_xml=file("f9", ref=True)))
    audio = track(clip(0, 10, file_xml=full))
    text = document(video, duration=10, audio=(audio,))
    _, info = parse_timeline_with_info(write(tmp_path, text))
    assert info.source_video_name == "Interview 01"


# -- the timeline's length (mistake 8) ------------------------------------------------------------


def test_zero_duration_with_clips_runs_to_the_last_clip(tmp_path):
    df, info = parse_timeline_with_info(
        write(tmp_path, document(track(clip(0, 40)), track(clip(20, 70)), duration=0))
    )
    assert (info.declared_duration_frames, info.length_frames, len(df)) == (0, 70, 70)
    assert col(df, 2, "active")[20:70].all()


def test_duration_shorter_than_the_clips_loses_no_sample(tmp_path):
    df, info = parse_timeline_with_info(write(tmp_path, document(track(clip(0, 90)), duration=30)))
    assert (info.declared_duration_frames, info.length_frames, len(df)) == (30, 90, 90)
    assert col(df, 1, "active").all()


def test_duration_longer_than_the_clips_gives_trailing_empty_rows(tmp_path):
    df, info = parse_timeline_with_info(write(tmp_path, document(track(clip(0, 10)), duration=25)))
    assert (info.length_frames, len(df)) == (25, 25)
    assert col(df, 1, "active").tolist() == [1] * 10 + [0] * 15
    assert not info.warnings


def test_a_clip_ending_under_a_final_transition_sets_the_length(tmp_path):
    # the clip's end is -1; the fade to black after it ends at 60 (alignment end-black)
    a = clip(0, -1)
    df, info = parse_timeline_with_info(
        write(tmp_path, document(track(a, transition(50, 60, alignment="end-black")), duration=5))
    )
    assert info.length_frames == 60 and len(df) == 60
    assert col(df, 1, "active").all()


def test_audio_clips_count_towards_the_length(tmp_path):
    audio = track(clip(0, 120, name="music.wav"))
    df, info = parse_timeline_with_info(
        write(tmp_path, document(track(clip(0, 30)), duration=30, audio=(audio,)))
    )
    assert info.length_frames == 120 and len(df) == 120
    assert col(df, 1, "active").tolist() == [1] * 30 + [0] * 90


def test_audio_only_timeline_gives_inactive_rows_and_says_so(tmp_path):
    audio = track(clip(0, 50, name="voice.wav"))
    df, info = parse_timeline_with_info(
        write(tmp_path, document(track(), duration=0, audio=(audio,)))
    )
    assert len(df) == 50
    assert not df.filter(like="_active").to_numpy().any()
    assert any("audio but no video clips" in w for w in info.warnings)


def test_no_clips_but_a_duration_gives_inactive_rows_and_says_so(tmp_path):
    df, info = parse_timeline_with_info(write(tmp_path, document(track(), duration=20)))
    assert len(df) == 20 and not df.filter(like="_active").to_numpy().any()
    assert any("has no clips" in w for w in info.warnings)


def test_a_longer_limit_admits_a_longer_timeline(tmp_path):
    path = write(tmp_path, document(track(clip(0, 10)), duration=40 * 3600 * 10))
    with pytest.raises(TimelineError, match="above the 24 h limit"):
        parse_timeline(path)
    _, info = parse_timeline_with_info(path, sample_rate_hz=0.01, max_seconds=48 * 3600)
    assert info.length_frames == 40 * 3600 * 10


# -- asset classes (mistake 7) --------------------------------------------------------------------


def test_asset_classes_by_track_extension_text_and_tag(tmp_path):
    t1 = track(clip(0, 10, name="game.mp4"), clip(10, 20, name="Title 01", file_xml=""))
    t2 = track(clip(0, 10, name="cam.mov"), clip(10, 20, name="logo.PNG"))
    t3 = track(clip(0, 10, name="broll.mov"), clip(10, 20, name="broll Class8.mov"))
    t4 = track(clip(0, 10, name="Color", tag="generatoritem"), clip(10, 20, name="b ID12.mov"))
    df = parse(tmp_path, t1, t2, t3, t4, duration=20)
    assert (col(df, 1, "asset")[[0, 10]] == [0, 2]).all()
    assert (col(df, 2, "asset")[[0, 10]] == [1, 3]).all()
    assert (col(df, 3, "asset")[[0, 10]] == [4, 8]).all()
    assert (col(df, 4, "asset")[[0, 10]] == [2, 4]).all()  # "ID12" is no 0..9 tag


def test_parsing_keeps_no_document_alive(tmp_path):
    import gc

    from xmlai_assets.timeline.parser import _Reader

    for _ in range(3):
        parse(tmp_path, track(clip(0, 10, name="logo.png")), duration=10)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, _Reader)]
