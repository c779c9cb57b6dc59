"""Splitting by video: disjoint, complete, sized as configured, deterministic, text-exact."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmlai_assets.features.split import split_videos, val_count, write_split_csvs
from xmlai_assets_tests.features.frames_factory import make_master, write_master

video_names = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=200, unique=True)


@given(ids=video_names, fraction=st.floats(0.01, 0.99), seed=st.integers(0, 2**32))
def test_no_video_in_both_splits_and_every_video_in_one(ids, fraction, seed):
    split = split_videos(ids, fraction, seed)
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == sorted(ids)
    assert len(split.val) == val_count(len(ids), fraction)
    assert split.train and split.val


@given(ids=video_names, seed=st.integers(0, 2**32), data=st.data())
def test_split_depends_on_the_set_of_videos_and_the_seed_only(ids, seed, data):
    shuffled = data.draw(st.permutations(ids))
    assert split_videos(ids, 0.2, seed) == split_videos(shuffled + ids[:1], 0.2, seed)


@settings(max_examples=30)
@given(ids=st.lists(st.text(min_size=1), min_size=20, max_size=200, unique=True))
def test_adding_a_video_keeps_all_but_a_boundary_video_on_its_side(ids):
    before = split_videos(ids[:-1], 0.2, 7)
    after = split_videos(ids, 0.2, 7)
    moved = set(before.val) - set(after.val)
    assert len(moved) <= 1


def test_val_count_rounds_half_up_and_keeps_both_sides():
    assert val_count(110, 0.2) == 22
    assert val_count(12, 0.2) == 2
    assert val_count(5, 0.5) == 3
    assert val_count(2, 0.01) == 1
    assert val_count(2, 0.99) == 1


def test_seed_changes_the_held_out_videos():
    ids = [f"v{i}" for i in range(110)]
    assert split_videos(ids, 0.2, 0).val != split_videos(ids, 0.2, 1).val


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_videos(["a", "b"], fraction, 0)


def test_a_single_video_cannot_be_split():
    with pytest.raises(ValueError, match="at least 2 videos"):
        split_videos(["only"], 0.2, 0)


def test_split_csvs_partition_the_master_lines_exactly(tmp_path):
    master = tmp_path / "master.csv"
    names = [f'clip, {i} "ø"' for i in range(9)]
    write_master(make_master(3, [5, 40, 1, 17, 3, 8, 60, 2, 11], names), master)
    split = split_videos(names, 0.3, 1)
    write_split_csvs(master, split, tmp_path / "train.csv", tmp_path / "val.csv")
    header, *rows = master.read_text().splitlines(keepends=True)
    train = (tmp_path / "train.csv").read_text().splitlines(keepends=True)
    val = (tmp_path / "val.csv").read_text().splitlines(keepends=True)
    assert train[0] == val[0] == header
    # every row of the master is in exactly one split, byte for byte and in its order
    assert sorted(train[1:] + val[1:]) == sorted(rows)
    assert [r for r in rows if r in set(val[1:])] == val[1:]
    assert sorted(pd.read_csv(tmp_path / "val.csv")["video_id"].unique()) == split.val
