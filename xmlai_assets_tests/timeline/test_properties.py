"""Properties over generated timelines: parsing the XML back gives the generator's truth."""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xmlai_assets.paths import MASTER_CSV, DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import (
    COLUMNS,
    TRACK_PARAMS,
    classify_asset,
    parse_timeline,
    track_column,
)
from xmlai_assets.timeline.ingest import build_master_csv, ingest_timeline_file
from xmlai_assets_tests.timeline.hostile import hostile_files

SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
seeds = st.integers(min_value=0, max_value=10**6)
seconds = st.floats(min_value=4, max_value=40)


@SETTINGS
@given(seed=seeds, secs=seconds, rate=st.sampled_from([10.0, 4.0, 25.0]))
def test_parsed_timeline_equals_the_generators_truth(tmp_path, seed, secs, rate):
    tl = generate_timeline(seed, seconds=secs)
    got = parse_timeline(tl.write(tmp_path), sample_rate_hz=rate)
    want = tl.truth(sample_rate_hz=rate)
    assert list(got.columns) == list(COLUMNS)  # every track, every parameter
    assert len(got) == len(want)
    np.testing.assert_array_equal(got["time"], want["time"])
    for t in range(1, 21):
        for p in TRACK_PARAMS:
            c = track_column(t, p)
            np.testing.assert_allclose(got[c], want[c], atol=1e-9, err_msg=f"{tl.name} {c}")
    assert (got["source_video_name"].astype(str) == want["source_video_name"]).all()


@SETTINGS
@given(seed=seeds, secs=seconds, declared=st.sampled_from(["zero", "short", "long"]))
def test_length_is_the_later_of_the_declared_duration_and_the_last_clip(
    tmp_path, seed, secs, declared
):
    tl = generate_timeline(seed, seconds=secs)
    last_end = max(c.end for c in tl.clips)
    tl.declared_duration = {"zero": 0, "short": last_end // 3, "long": last_end + 97}[declared]
    got = parse_timeline(tl.write(tmp_path))
    want = tl.truth()
    assert got.attrs["timeline"]["length_frames"] == max(tl.declared_duration, last_end)
    assert len(got) == len(want)
    for t in range(1, 21):  # every clip's samples are there
        c = track_column(t, "active")
        np.testing.assert_array_equal(got[c], want[c], err_msg=f"{tl.name} {c}")


@SETTINGS
@given(seed=seeds)
def test_keyframed_ramps_are_linear_between_their_keys(tmp_path, seed):
    from xmlai_assets.synth import Ramp

    tl = generate_timeline(seed, seconds=30)
    got = parse_timeline(tl.write(tmp_path), sample_rate_hz=float(tl.fps))
    for clip in tl.clips:
        if not clip.enabled or clip.track in tl.disabled_tracks:
            continue
        for p, v in clip.params.items():
            if not isinstance(v, Ramp):
                continue
            lo, hi = max(v.f0, clip.start), min(v.f1, clip.end - 1)
            frames = np.arange(lo, hi + 1)
            frames = frames[frames < len(got)]
            if len(frames) < 2:
                continue
            expected = v.v0 + (v.v1 - v.v0) * (frames - v.f0) / (v.f1 - v.f0)
            np.testing.assert_allclose(
                got[track_column(clip.track, p)].to_numpy()[frames], expected
            )


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=40),
    file_name=st.text(max_size=30),
    track=st.integers(min_value=1, max_value=20),
    gen=st.booleans(),
    nest=st.booleans(),
)
def test_asset_class_is_always_0_to_9(name, file_name, track, gen, nest):
    assert 0 <= classify_asset(name, file_name, track=track, is_generator=gen, is_nest=nest) <= 9


@settings(max_examples=50, deadline=None)
@given(
    digits=st.integers(min_value=0, max_value=10**6),
    prefix=st.sampled_from(["Class", "ID", "class_", "ID "]),
)
def test_tags_only_name_single_digit_classes(digits, prefix):
    got = classify_asset(f"clip {prefix}{digits}.mov", track=3)
    assert got == (digits if digits <= 9 else 4)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seeds=st.lists(seeds, min_size=1, max_size=4, unique=True), n_bad=st.integers(0, 3))
def test_folder_with_good_and_bad_files_keeps_every_good_row(tmp_path_factory, seeds, n_bad):
    root = tmp_path_factory.mktemp("data")
    layout = DataLayout.at(root)
    good = {generate_timeline(s, seconds=8).write(layout.timelines_dir).name: s for s in seeds}
    bad = dict(list(hostile_files(layout.timelines_dir).items())[:n_bad])
    names = sorted(set(good) | set(bad))
    for name in names:
        ingest_timeline_file(layout, name)
    summary = build_master_csv(layout, names)
    master = pd.read_csv(layout.local(MASTER_CSV))
    assert list(master.columns) == list(COLUMNS)
    assert set(summary.failed) == set(bad)
    expected_rows = 0
    for name in good:
        part = parse_timeline(layout.timelines_dir / name)
        rows = master[master["video_id"] == part["video_id"].iloc[0]]
        assert len(rows) == len(part)
        np.testing.assert_allclose(
            rows.iloc[:, 2:].to_numpy(float), part.iloc[:, 2:].to_numpy(float)
        )
        expected_rows += len(part)
    assert len(master) == expected_rows == summary.rows
