"""The data checks that gate training find each kind of bad data and say where it is."""

import numpy as np
import pytest

from xmlai_assets.features.checks import master_problems, sequence_problems, split_problems
from xmlai_assets.features.frames import TrackFrames
from xmlai_assets.features.split import split_videos
from xmlai_assets.features.windows import cut_windows
from xmlai_assets.timeline.schema import TRACK_COLUMNS
from xmlai_assets_tests.features.frames_factory import make_master, write_master


@pytest.fixture
def master():
    return make_master(5, [30, 12, 25], ["a", "b", "c"])


def test_a_good_master_passes(tmp_path, master):
    write_master(master, tmp_path / "m.csv")
    assert master_problems(tmp_path / "m.csv") == []


def _set(column, row, value):
    def mutate(df):
        df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            _set("target_v2_scale", 40, np.nan),
            "target_v2_scale: missing or not finite: 1 rows, first: line 42 (video 'b')",
        ),
        (_set("target_v3_x", 3, np.inf), "target_v3_x: missing or not finite"),
        (
            _set("target_v1_active", 5, 2),
            "target_v1_active: outside 0..1: 1 rows, first: 2.0 at line 7 (video 'a')",
        ),
        (_set("target_v7_asset", 50, 10), "target_v7_asset: outside 0..9"),
        (_set("target_v7_asset", 50, 1.5), "target_v7_asset: not a whole number"),
        (_set("target_v20_crop_b", 60, 100.5), "target_v20_crop_b: outside 0..100"),
        (_set("target_v4_crop_l", 0, -1), "target_v4_crop_l: outside 0..100"),
        (
            _set("time", 33, 0.0),
            "time not strictly increasing within a video: 1 rows, first: line 35 (video 'b': 0.0 after 0.2)",
        ),
        (_set("time", 10, 0.9), "time not strictly increasing within a video"),
        (_set("time", 10, np.nan), "time: missing or not finite"),
        (_set("target_v1_scale", 2, "big"), "cannot read"),
        (lambda df: df.drop(columns="target_v9_y"), "182 columns, expected 183"),
        (
            lambda df: df.rename(
                columns={"target_v1_x": "target_v1_y", "target_v1_y": "target_v1_x"}
            ),
            "column 7 is 'target_v1_y', expected 'target_v1_x'",
        ),
        (lambda df: df.iloc[:0], "no videos"),
    ],
)
def test_each_kind_of_bad_master_is_found_with_its_place(tmp_path, master, mutate, expected):
    df = mutate(master.copy())
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    problems = master_problems(path)
    assert any(expected in p for p in problems), problems


def test_time_may_restart_per_video_even_when_rows_interleave(tmp_path, master):
    interleaved = master.iloc[np.r_[0:10, 30:42, 10:30, 42:67]]
    interleaved.to_csv(tmp_path / "m.csv", index=False)
    assert master_problems(tmp_path / "m.csv") == []


def frames_of(df):
    lengths = df.groupby("video_id", sort=False).size().to_numpy()
    return TrackFrames(
        video_ids=list(df["video_id"].unique()),
        offsets=np.cumsum(lengths) - lengths,
        lengths=lengths,
        time=df["time"].to_numpy(),
        values=df[list(TRACK_COLUMNS)].to_numpy(np.float32).reshape(len(df), 20, 9),
    )


@pytest.fixture
def windows(master):
    frames = frames_of(master)
    return cut_windows(frames, frames.values, 10, 8), {"a": 30, "b": 12, "c": 25}


def test_well_formed_windows_pass(windows):
    seq, rows = windows
    assert sequence_problems(seq, rows, 10, 8) == []


def _tamper(name, fn):
    def apply(seq):
        setattr(seq, name, fn(getattr(seq, name).copy()))
        return seq

    return apply


def _mask_step(m):
    m[0, 3] = False
    return m


def _pad_value(s):
    s[3, 9, 5] = 1.0  # window 3 is video a's last: steps 24..29, then padding
    return s


def _swap(a):
    a[[0, 1]] = a[[1, 0]]
    return a


def _asset(s):
    s[0, 0, 1] = 12
    return s


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (_tamper("masks", _mask_step), "masks: 1 windows do not mark exactly their padding"),
        (_tamper("sequences", _pad_value), "padding: 1 padded steps not all zero"),
        (_tamper("sequences", lambda s: s[:, :9]), "sequences: shape"),
        (_tamper("sequences", lambda s: s.astype(np.float64)), "sequences: dtype float64"),
        (_tamper("start_times", _swap), "not in time order"),
        (_tamper("sequences", _asset), "asset: 1 values not whole numbers in 0..9"),
        (_tamper("step_seconds", lambda a: a * 0), "step_seconds: not a positive step"),
        (
            lambda seq: type(seq)(**{k: v[1:] for k, v in seq.arrays().items()}),
            "windows per video (found, expected) differ: {'a': (3, 4)}",
        ),
    ],
)
def test_each_kind_of_bad_window_is_found(windows, tamper, expected):
    seq, rows = windows
    problems = sequence_problems(tamper(seq), rows, 10, 8)
    assert any(expected in p for p in problems), problems


def test_windows_cut_with_another_stride_do_not_pass(windows, master):
    frames = frames_of(master)
    _, rows = windows
    assert sequence_problems(cut_windows(frames, frames.values, 10, 5), rows, 10, 8)


def test_split_problems_find_shared_videos_and_a_split_other_than_configured(windows):
    seq, _ = windows

    def keep(s, ids):
        return type(s)(**{k: v[np.isin(s.video_ids, ids)] for k, v in s.arrays().items()})

    split = split_videos(["a", "b", "c"], 0.34, 0.3, 3)
    sides = {name: keep(seq, ids) for name, ids in split.by_name().items()}
    assert all(len(ids) == 1 for ids in split.by_name().values())
    assert split_problems(sides, 0.34, 0.3, 3) == []
    shared = split_problems({**sides, "train": seq}, 0.34, 0.3, 3)
    assert any("videos in both" in p for p in shared)
    # configured without a test: one of the three should have been trained on
    assert any("held out for test" in p for p in split_problems(sides, 0.34, 0.0, 3))
    other_seed = next(
        s for s in range(100) if split_videos(["a", "b", "c"], 0.34, 0.3, s).test != split.test
    )
    assert any(
        f"not the ones seed {other_seed} chooses" in p
        for p in split_problems(sides, 0.34, 0.3, other_seed)
    )
