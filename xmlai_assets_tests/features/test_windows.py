"""Windows: cut per timeline at the stride, padded to full length, masked, written exactly."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmlai_assets.features.frames import DataFileError, TrackFrames, group_rows
from xmlai_assets.features.windows import (
    Sequences,
    cut_windows,
    read_npz,
    window_starts,
    write_npz,
)

lengths_st = st.lists(st.integers(1, 400), min_size=1, max_size=6)


@st.composite
def window_and_stride(draw):
    window = draw(st.integers(1, 120))
    return window, draw(st.integers(1, window))


def traced_frames(lengths):
    """Frames whose every row carries its own global row number + 1 in every feature."""
    lengths = np.asarray(lengths, dtype=np.int64)
    n = int(lengths.sum())
    values = np.repeat((np.arange(n, dtype=np.float32) + 1)[:, None], 180, axis=1)
    return TrackFrames(
        video_ids=[f"v{i}" for i in range(len(lengths))],
        offsets=np.cumsum(lengths) - lengths,
        lengths=lengths,
        time=np.arange(n) * 0.1,
        values=values.reshape(n, 20, 9),
    )


def reference_windows(length, window, stride):
    """The windows of one timeline written out plainly: [(first step, real steps)]."""
    out, start = [(0, min(window, length))], stride
    while start + (window - stride) < length:
        out.append((start, min(window, length - start)))
        start += stride
    return out


@settings(max_examples=200, deadline=None)
@given(lengths=lengths_st, ws=window_and_stride())
def test_every_step_appears_in_exactly_the_windows_the_stride_predicts(lengths, ws):
    window, stride = ws
    frames = traced_frames(lengths)
    seq = cut_windows(frames, frames.values, window, stride)
    i = 0
    for v, length in enumerate(lengths):
        expected = reference_windows(length, window, stride)
        assert len(expected) == max(1, math.ceil((length - (window - stride)) / stride))
        for start, real in expected:
            assert seq.video_ids[i] == f"v{v}"
            assert seq.start_times[i] == pytest.approx(frames.time[frames.offsets[v] + start])
            rows = seq.sequences[i, :, 0]
            want = frames.offsets[v] + start + np.arange(real) + 1
            np.testing.assert_array_equal(rows[:real], want)  # consecutive, in order, one video
            assert seq.masks[i, :real].all() and not seq.masks[i, real:].any()
            assert not seq.sequences[i, real:].any()  # padding is all zero
            i += 1
        # step t sits in window k exactly when k * stride <= t < k * stride + window
        first, k, t = i - len(expected), np.arange(len(expected))[:, None], np.arange(length)
        found = np.zeros((len(expected), length), dtype=bool)
        for w in range(len(expected)):
            steps = seq.sequences[first + w, seq.masks[first + w], 0].astype(int) - 1
            found[w, steps - frames.offsets[v]] = True
        np.testing.assert_array_equal(found, (k * stride <= t) & (t < k * stride + window))
        assert found.any(axis=0).all()
    assert i == len(seq.masks)


@settings(max_examples=100, deadline=None)
@given(lengths=lengths_st, ws=window_and_stride())
def test_windows_are_full_length_and_never_span_two_videos(lengths, ws):
    window, stride = ws
    frames = traced_frames(lengths)
    seq = cut_windows(frames, frames.values, window, stride)
    assert seq.sequences.shape == (len(seq.masks), window, 180)
    assert seq.sequences.dtype == np.float32 and seq.masks.dtype == bool
    owner = np.repeat(np.arange(len(lengths)), lengths)
    for w in range(len(seq.masks)):
        rows = seq.sequences[w, seq.masks[w], 0].astype(int) - 1
        assert len(set(owner[rows])) == 1
        assert f"v{owner[rows[0]]}" == seq.video_ids[w]
    assert seq.masks.sum(axis=1).min() >= 1  # no window is all padding


def test_short_timeline_gets_one_padded_window_and_long_one_overlapping_windows():
    video, start = window_starts(np.array([30, 100, 101, 180, 181]), 100, 80)
    assert video.tolist() == [0, 1, 2, 2, 3, 3, 4, 4, 4]
    assert start.tolist() == [0, 0, 0, 80, 0, 80, 0, 80, 160]


@pytest.mark.parametrize(("window", "stride"), [(100, 0), (100, 101), (0, 0)])
def test_a_stride_that_skips_steps_is_refused(window, stride):
    with pytest.raises(ValueError, match="stride"):
        window_starts(np.array([10]), window, stride)


def test_rows_of_a_video_are_grouped_even_when_not_contiguous():
    order, offsets, lengths = group_rows(np.array([0, 0, 1, 0, 2, 1]))
    assert order.tolist() == [0, 1, 3, 2, 5, 4]
    assert offsets.tolist() == [0, 3, 5] and lengths.tolist() == [3, 2, 1]
    assert group_rows(np.array([0, 0, 1, 2]))[0] is None


def test_npz_round_trips_and_identical_arrays_give_identical_bytes(tmp_path):
    frames = traced_frames([130, 7])
    seq = cut_windows(frames, frames.values, 100, 80)
    write_npz(seq, tmp_path / "a.npz")
    write_npz(cut_windows(frames, frames.values, 100, 80), tmp_path / "b.npz")
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    back = read_npz(tmp_path / "a.npz")
    with np.load(tmp_path / "a.npz") as data:
        assert sorted(data.files) == sorted(
            ["masks", "sequences", "start_times", "video_ids", "first_targets", "step_seconds"]
        )
    for name, array in seq.arrays().items():
        np.testing.assert_array_equal(getattr(back, name), array)
        assert getattr(back, name).dtype == array.dtype
    assert not list(tmp_path.glob("*.tmp"))


def test_each_window_carries_its_timelines_step():
    frames = traced_frames([130, 1, 7])
    frames.time[130:] = np.array([5.0, 0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24])  # 25 Hz
    seq = cut_windows(frames, frames.values, 100, 80)
    assert seq.video_ids.tolist() == ["v0", "v0", "v1", "v2"]
    np.testing.assert_allclose(seq.step_seconds, [0.1, 0.1, 0.0, 0.04])


def test_npz_holding_a_pickle_or_junk_is_refused(tmp_path):
    objects = Sequences(
        sequences=np.zeros((1, 2, 180), np.float32),
        masks=np.ones((1, 2), bool),
        video_ids=np.array([{"a": 1}], dtype=object),
        start_times=np.zeros(1),
        first_targets=np.zeros(1, np.int16),
        step_seconds=np.full(1, 0.1),
    )
    np.savez(tmp_path / "pickled.npz", **objects.arrays())
    with pytest.raises(DataFileError, match="pickled.npz"):
        read_npz(tmp_path / "pickled.npz")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataFileError, match="not a readable sequences file"):
        read_npz(tmp_path / "junk.npz")
