"""Splitting by video: disjoint, complete, sized as configured, deterministic, text-exact."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmlai_assets.features.split import (
    SPLITS,
    n_test_videos,
    split_videos,
    val_count,
    write_split_csvs,
)
from xmlai_assets_tests.features.frames_factory import make_master, write_master

video_names = st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=200, unique=True)


@given(
    ids=video_names,
    fraction=st.floats(0.01, 0.99),
    test_share=st.floats(0.0, 0.99),
    seed=st.integers(0, 2**32),
)
def test_no_video_in_two_splits_and_every_video_in_one(ids, fraction, test_share, seed):
    test_fraction = test_share * (1.0 - fraction)  # what is left beside validation
    split = split_videos(ids, fraction, test_fraction, seed)
    sides = split.by_name()
    assert sum(len(v) for v in sides.values()) == len(set().union(*sides.values())) == len(ids)
    assert sorted(split.train + split.val + split.test) == sorted(ids)
    n_test = n_test_videos(len(ids), test_fraction)
    assert len(split.test) == n_test
    assert len(split.val) == val_count(len(ids), fraction, n_test)
    assert split.train and split.val


@given(ids=video_names, seed=st.integers(0, 2**32), data=st.data())
def test_split_depends_on_the_set_of_videos_and_the_seed_only(ids, seed, data):
    shuffled = data.draw(st.permutations(ids))
    assert split_videos(ids, 0.2, 0.1, seed) == split_videos(shuffled + ids[:1], 0.2, 0.1, seed)


@settings(max_examples=30)
@given(ids=st.lists(st.text(min_size=1), min_size=20, max_size=200, unique=True))
def test_adding_a_video_keeps_all_but_a_boundary_video_on_its_side(ids):
    before = split_videos(ids[:-1], 0.2, 0.15, 7)
    after = split_videos(ids, 0.2, 0.15, 7)
    for side in ("val", "test"):
        assert len(set(getattr(before, side)) - set(getattr(after, side))) <= 1


def test_counts_round_half_up_and_keep_training_and_validation():
    assert val_count(110, 0.2) == 22
    assert val_count(12, 0.2) == 2
    assert val_count(5, 0.5) == 3
    assert val_count(2, 0.01) == 1
    assert val_count(2, 0.99) == 1
    assert val_count(5, 0.5, n_test=2) == 2  # one is left to train on
    # the defaults on the corpus and on the bundled sample
    assert (n_test_videos(110, 0.15), val_count(110, 0.15, 17)) == (17, 17)
    assert (n_test_videos(12, 0.15), val_count(12, 0.15, 2)) == (2, 2)
    assert n_test_videos(3, 0.01) == 1  # at least one, from 3 videos on
    assert n_test_videos(2, 0.5) == 0  # 2 videos: train and validation only
    assert n_test_videos(50, 0.0) == 0


def test_seed_changes_the_held_out_videos():
    ids = [f"v{i}" for i in range(110)]
    assert split_videos(ids, 0.2, 0.1, 0).val != split_videos(ids, 0.2, 0.1, 1).val
    assert split_videos(ids, 0.2, 0.1, 0).test != split_videos(ids, 0.2, 0.1, 1).test


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_zero_one_is_refused(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_videos(["a", "b"], fraction, 0.0, 0)


def test_held_out_shares_that_leave_nothing_to_train_on_are_refused():
    with pytest.raises(ValueError, match="test_fraction"):
        split_videos(["a", "b", "c"], 0.5, 0.5, 0)


def test_a_single_video_cannot_be_split():
    with pytest.raises(ValueError, match="at least 2 videos"):
        split_videos(["only"], 0.2, 0.1, 0)


def test_split_csvs_partition_the_master_lines_exactly(tmp_path):
    master = tmp_path / "master.csv"
    names = [f'clip, {i} "ø"' for i in range(9)]
    write_master(make_master(3, [5, 40, 1, 17, 3, 8, 60, 2, 11], names), master)
    split = split_videos(names, 0.3, 0.2, 1)
    paths = {name: tmp_path / f"{name}.csv" for name in SPLITS}
    write_split_csvs(master, split, paths)
    header, *rows = master.read_text().splitlines(keepends=True)
    lines = {name: path.read_text().splitlines(keepends=True) for name, path in paths.items()}
    assert all(part[0] == header for part in lines.values())
    # every row of the master is in exactly one split, byte for byte and in its order
    assert sorted(sum((part[1:] for part in lines.values()), [])) == sorted(rows)
    for name, part in lines.items():
        assert [r for r in rows if r in set(part[1:])] == part[1:]
        assert sorted(pd.read_csv(paths[name])["video_id"].unique()) == getattr(split, name)
    assert split.test and split.val


def test_a_split_without_videos_gets_the_header_alone(tmp_path):
    master = tmp_path / "master.csv"
    write_master(make_master(3, [5, 4], ["a", "b"]), master)
    split = split_videos(["a", "b"], 0.5, 0.15, 0)
    assert split.test == []
    paths = {name: tmp_path / f"{name}.csv" for name in SPLITS}
    write_split_csvs(master, split, paths)
    assert paths["test"].read_text() == master.read_text().splitlines(keepends=True)[0]
