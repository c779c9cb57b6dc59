"""Scalers: fitted on active training entries only, bounded, invertible, hash-checked on load."""

import hashlib
import json
import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmlai_assets.features.frames import BLOCK_BYTES, DataFileError, load_track_frames
from xmlai_assets.features.preprocess import build_sequences, fit_train_scalers, split_master
from xmlai_assets.features.scalers import (
    active_entries,
    denormalize,
    describe_scalers,
    fit_scalers,
    load_scalers,
    normalize,
    read_active_entries,
    scalers_files,
)
from xmlai_assets.paths import (
    MASTER_CSV,
    SCALERS_JSON,
    SCALERS_PKL,
    SPLITS,
    DataLayout,
    sequences_npz,
)
from xmlai_assets.timeline.schema import CONTINUOUS_PARAMS, INACTIVE_VALUES, TRACK_PARAMS
from xmlai_assets_tests.features.frames_factory import make_master, write_master

lengths = st.lists(st.integers(1, 60), min_size=2, max_size=8)
kinds = st.sampled_from(["standard", "minmax", "robust"])


def values_of(df):
    from xmlai_assets.timeline.schema import TRACK_COLUMNS

    return df[list(TRACK_COLUMNS)].to_numpy(np.float64).reshape(len(df), 20, 9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), lengths=lengths, kind=kinds)
def test_normalized_training_values_have_the_kinds_bounds(seed, lengths, kind):
    values = values_of(make_master(seed, lengths))
    scaled = normalize(values, fit_scalers(active_entries(values), kind))
    active = values[:, :, 0] == 1
    for param in CONTINUOUS_PARAMS:
        z = scaled[:, :, TRACK_PARAMS.index(param)][active].astype(np.float64)
        if kind == "standard":
            assert abs(z.mean()) < 1e-4
            assert z.std() == pytest.approx(1.0, abs=1e-4) or z.std() == 0.0
        elif kind == "minmax":
            assert z.min() >= -1e-6 and z.max() <= 1 + 1e-6
        else:
            assert abs(np.median(z)) < 1e-4
        # inactive entries carry no placeholder into the model
        assert not scaled[:, :, TRACK_PARAMS.index(param)][~active].any()
    np.testing.assert_array_equal(scaled[:, :, :2], values[:, :, :2])  # classes stay integers
    assert scaled.dtype == np.float32


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), lengths=lengths, kind=kinds)
def test_inverse_transform_gives_back_the_original_values(seed, lengths, kind):
    values = values_of(make_master(seed, lengths))
    scalers = fit_scalers(active_entries(values), kind)
    back = denormalize(normalize(values, scalers), scalers)
    # float32 in between: agreement to float32 precision of the larger values
    np.testing.assert_allclose(back, values, rtol=1e-6, atol=1e-3)
    inactive = values[:, :, 0] == 0
    for param in CONTINUOUS_PARAMS:
        assert (back[:, :, TRACK_PARAMS.index(param)][inactive] == INACTIVE_VALUES[param]).all()


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), lengths=st.lists(st.integers(1, 40), min_size=3, max_size=8))
def test_scalers_do_not_change_when_only_held_out_data_changes(seed, lengths):
    df = make_master(seed, lengths)
    other = make_master(seed + 1, lengths)
    with tempfile.TemporaryDirectory() as tmp:
        layout = DataLayout.at(tmp)
        write_master(df, layout.local(MASTER_CSV))
        split = split_master(layout, 0.3, 0.2, seed).split
        fit_train_scalers(layout)
        before = layout.local(SCALERS_PKL).read_bytes(), layout.local(SCALERS_JSON).read_bytes()

        in_val = df["video_id"].isin(split.val + split.test)  # the held-out videos
        changed = df.copy()
        changed.loc[in_val, df.columns[3:]] = other.loc[in_val, df.columns[3:]].to_numpy()
        write_master(changed, layout.local(MASTER_CSV))
        assert split_master(layout, 0.3, 0.2, seed).split == split
        fit_train_scalers(layout)
        assert (
            layout.local(SCALERS_PKL).read_bytes(),
            layout.local(SCALERS_JSON).read_bytes(),
        ) == before

        # a change to a training video does move them
        in_train = df["video_id"] == split.train[0]
        changed.loc[in_train, ["target_v1_active", "target_v1_scale"]] = [1, 999.0]
        write_master(changed, layout.local(MASTER_CSV))
        split_master(layout, 0.3, 0.2, seed)
        fit_train_scalers(layout)
        assert layout.local(SCALERS_PKL).read_bytes() != before[0]


def test_placeholders_of_inactive_tracks_do_not_move_the_statistics():
    values = values_of(make_master(0, [50, 50]))
    before = describe_scalers(fit_scalers(active_entries(values)), active_entries(values))
    values[:, :, TRACK_PARAMS.index("scale")][values[:, :, 0] == 0] = 1e6
    assert describe_scalers(fit_scalers(active_entries(values)), active_entries(values)) == before


def test_one_scaler_per_parameter_pooled_over_tracks():
    values = values_of(make_master(1, [30]))
    entries = active_entries(values)
    scalers = fit_scalers(entries, "standard")
    assert sorted(scalers) == sorted(CONTINUOUS_PARAMS)
    x = entries["x"]
    assert x.size == int((values[:, :, 0] == 1).sum())
    assert scalers["x"].center == pytest.approx(x.mean())
    assert scalers["x"].scale == pytest.approx(x.std())


SKLEARN_SCALERS = {
    "standard": ("StandardScaler", "mean_", "scale_"),
    "minmax": ("MinMaxScaler", "data_min_", None),
    "robust": ("RobustScaler", "center_", "scale_"),
}


@settings(max_examples=60, deadline=None)
@given(
    x=st.lists(
        st.one_of(
            st.floats(-1e4, 1e4, allow_nan=False),
            st.sampled_from([0.0, 0.5, 100.0]),  # ties and constant columns
        ),
        min_size=1,
        max_size=60,
    ),
    kind=kinds,
)
def test_scalers_fit_what_scikit_learn_fits(x, kind):
    import sklearn.preprocessing

    x = np.array(x)
    name, center_attr, scale_attr = SKLEARN_SCALERS[kind]
    theirs = getattr(sklearn.preprocessing, name)().fit(x.reshape(-1, 1))
    ours = fit_scalers(dict.fromkeys(CONTINUOUS_PARAMS, x), kind)["scale"]
    assert ours.center == getattr(theirs, center_attr)[0]
    scale = getattr(theirs, scale_attr)[0] if scale_attr else 1.0 / theirs.scale_[0]
    assert ours.scale == scale
    np.testing.assert_allclose(
        ours.transform(x), theirs.transform(x.reshape(-1, 1)).ravel(), rtol=1e-12, atol=1e-12
    )


def test_json_describes_the_transform_and_scalers_load_from_it_alone():
    values = values_of(make_master(2, [40, 30]))
    scalers = fit_scalers(active_entries(values), "minmax")
    stats = describe_scalers(scalers, active_entries(values))
    pickled, text = scalers_files(scalers, "scalers.pkl", {"kind": "minmax", "params": stats})
    doc = json.loads(text)
    assert doc["pickle"] == "scalers.pkl"
    assert doc["pickle_sha256"] == hashlib.sha256(pickled).hexdigest()
    x = active_entries(values)["y"]
    y = doc["params"]["y"]
    want = scalers["y"].transform(x.reshape(-1, 1)).ravel()
    np.testing.assert_allclose((x - y["center"]) / y["scale"], want)
    loaded = load_scalers(text)
    np.testing.assert_allclose(loaded["y"].transform(x), want)
    np.testing.assert_allclose(loaded["y"].inverse_transform(loaded["y"].transform(x)), x)


def test_a_hostile_pickle_with_a_matching_hash_runs_no_code(tmp_path):
    layout = DataLayout.at(tmp_path)
    write_master(make_master(2, [40, 30, 35, 25]), layout.local(MASTER_CSV))
    split_master(layout, 0.25, 0.25, 0)
    fit_train_scalers(layout)
    before = {s: layout.local(sequences_npz(s)) for s in SPLITS}
    build_sequences(layout, 10, 8)
    expected = {s: path.read_bytes() for s, path in before.items()}
    marker = tmp_path / "code ran"

    class Exploit:
        def __reduce__(self):
            return (Path.touch, (marker,))

    hostile = pickle.dumps(Exploit())
    layout.local(SCALERS_PKL).write_bytes(hostile)
    js = layout.local(SCALERS_JSON)
    doc = json.loads(js.read_text())
    doc["pickle_sha256"] = hashlib.sha256(hostile).hexdigest()
    js.write_text(json.dumps(doc))
    build_sequences(layout, 10, 8)  # reads the scalers the pipeline uses
    assert not marker.exists()
    assert {s: path.read_bytes() for s, path in before.items()} == expected


def test_a_damaged_scalers_json_is_a_clear_error():
    with pytest.raises(DataFileError, match="scalers.json: not a scalers file"):
        load_scalers('{"params": {"x": {"center": 0, "scale": 0}}}')


def test_streamed_reads_of_a_csv_larger_than_a_block_match_its_values(tmp_path):
    df = make_master(6, [4000, 1, 2500])
    write_master(df, tmp_path / "train.csv")
    assert (tmp_path / "train.csv").stat().st_size > 3 * BLOCK_BYTES
    entries, rows, videos = read_active_entries(tmp_path / "train.csv")
    assert (rows, videos) == (6501, 3)
    for param, want in active_entries(values_of(df)).items():
        np.testing.assert_array_equal(entries[param], want)
    frames = load_track_frames(tmp_path / "train.csv", np.float64)
    np.testing.assert_array_equal(frames.values, values_of(df))
    np.testing.assert_array_equal(frames.time, df["time"])
    assert frames.lengths.tolist() == [4000, 1, 2500]


def test_scalers_fit_from_a_csv_match_the_frame_values(tmp_path):
    df = make_master(4, [12, 7])
    write_master(df, tmp_path / "train.csv")
    frames = load_track_frames(tmp_path / "train.csv", np.float64)
    np.testing.assert_array_equal(frames.values, values_of(df))
    assert frames.video_ids == ["video 000", "video 001"]
    assert frames.lengths.tolist() == [12, 7]


def test_no_active_entry_is_a_clear_error():
    values = values_of(make_master(0, [5]))
    values[:, :, 0] = 0
    with pytest.raises(ValueError, match="no active track entries"):
        fit_scalers(active_entries(values))
