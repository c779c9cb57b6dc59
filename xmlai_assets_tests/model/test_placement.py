"""The placement vocabulary, the placement model and its metrics, on hand-made corpora."""

import math

import numpy as np
import pytest

from xmlai_assets.features.frames import TrackFrames
from xmlai_assets.model.placement import (
    Follow,
    PlacementModel,
    Ranked,
    Tolerance,
    Vocabulary,
    find_onsets,
    fit_follows,
    margin,
    model_predictor,
    most_common,
    nearest_neighbour,
    score,
    suggest_for,
    valid_layout,
)

CORNER = [30.0, 0.36, -0.32, 0, 0, 0, 0]  # a face cam top right
OTHER_CORNER = [30.0, -0.36, 0.32, 0, 0, 0, 0]
SIDE_LEFT = [50.0, -0.25, 0.0, 20, 20, 0, 0]  # V1 in a side-by-side layout
SIDE_RIGHT = [50.0, 0.25, 0.0, 20, 20, 0, 0]  # its V2 partner
FULL = [100.0, 0.0, 0.0, 0, 0, 0, 0]


def frames_of(videos):
    """TrackFrames from videos given as rows of {track: (asset, placement)}."""
    rows = [row for video in videos for row in video]
    values = np.zeros((len(rows), 20, 9))
    values[:, :, 2] = 100.0  # an inactive track's placeholder scale
    for i, row in enumerate(rows):
        for track, (asset, placement) in row.items():
            values[i, track] = [1, asset, *placement]
    lengths = np.array([len(v) for v in videos])
    return TrackFrames(
        video_ids=[f"v{i}" for i in range(len(videos))],
        offsets=np.cumsum(lengths) - lengths,
        lengths=lengths,
        time=np.concatenate([np.arange(n) * 0.1 for n in lengths]),
        values=values,
    )


def test_onsets_are_where_a_track_comes_on_in_each_video():
    full = {0: (1, FULL)}
    cam = {0: (1, FULL), 3: (2, CORNER)}
    frames = frames_of([[full, cam, cam, full, cam], [cam, cam]])
    onsets = find_onsets(frames)
    # V1 at the start of each video; V4 at rows 1 and 4 of the first, 0 of the second
    assert list(zip(onsets.row.tolist(), onsets.track.tolist(), strict=True)) == [
        (0, 0), (1, 3), (4, 3), (5, 0), (5, 3),
    ]  # fmt: skip
    assert onsets.video.tolist() == [0, 0, 0, 1, 1]
    assert onsets.asset.tolist() == [1, 2, 2, 1, 2]
    np.testing.assert_array_equal(onsets.placement[1], CORNER)
    assert onsets.layout.shape == (5, 20, 9)


def test_the_vocabulary_groups_placements_within_the_tolerance():
    placements = np.array([CORNER, CORNER, [32.0, 0.37, -0.31, 1, 0, 0, 0], OTHER_CORNER, FULL])
    vocabulary = Vocabulary.fit(placements, Tolerance())
    # the two corners and full screen; the near copy of CORNER joins it
    assert len(vocabulary) == 3
    np.testing.assert_array_equal(vocabulary.representatives[0], CORNER)  # covers the most
    assert vocabulary.counts.tolist() == [3, 1, 1]
    assert vocabulary.assign(placements).tolist()[:3] == [0, 0, 0]
    far = [30.0, 0.36 + 0.031, -0.32, 0, 0, 0, 0]  # the centre 0.031 off: another placement
    assert vocabulary.assign(np.array([far])).tolist() == [-1]
    again = Vocabulary.from_dict(vocabulary.as_dict())
    np.testing.assert_array_equal(again.representatives, vocabulary.representatives)


def test_a_representative_is_the_placement_right_for_the_most_onsets():
    # scale 25 is the most frequent, but a suggestion of 30 is within 5 points of all four
    scales = [25.0, 25.0, 30.0, 35.0]
    vocabulary = Vocabulary.fit(np.array([[s, *CORNER[1:]] for s in scales]))
    assert vocabulary.representatives[:, 0].tolist() == [30.0]
    assert vocabulary.counts.tolist() == [4]


def test_the_model_learns_which_placement_goes_with_the_layout_around_it():
    """Two known layouts: a face cam (asset 2) on V4 goes top right when V1 is full screen
    and bottom left when V1 and V2 are side by side. Only the other tracks tell them apart."""
    full = {0: (1, FULL)}
    side = {0: (1, SIDE_LEFT), 1: (1, SIDE_RIGHT)}
    videos = []
    for _ in range(6):
        videos.append([full, {**full, 3: (2, CORNER)}, full])
        videos.append([side, {**side, 3: (2, OTHER_CORNER)}, side])
    train = find_onsets(frames_of(videos))
    vocabulary = Vocabulary.fit(train.placement)
    model = PlacementModel.fit(train, vocabulary)
    model.tune(train)
    assert model.context_weight[3, :2].max() > 0  # V1 or V2 is what tells them apart
    held_out = find_onsets(
        frames_of([[full, {**full, 3: (2, CORNER)}], [side, {**side, 3: (2, OTHER_CORNER)}]])
    )
    cams = held_out.track == 3
    ranked = model_predictor(model)(held_out, 3)
    np.testing.assert_array_equal(ranked.candidates[cams, 0], [CORNER, OTHER_CORNER])
    assert np.exp(ranked.true_log_prob[cams]).min() > 0.8  # measured: 0.87 and 0.98
    # the track's most common placement cannot tell them apart: one of the two is wrong
    common = most_common(train, vocabulary)(held_out, 3)
    assert (common.candidates[cams, 0] == common.candidates[cams, 0][0]).all()
    # the nearest neighbour by the other tracks' layout can
    near = nearest_neighbour(train)(held_out, 3)
    np.testing.assert_array_equal(near.candidates[cams, 0], [CORNER, OTHER_CORNER])
    # and the model round-trips through its file
    again = PlacementModel.from_json(model.to_json())
    np.testing.assert_allclose(
        again.log_probs(held_out.track, held_out.asset, held_out.layout),
        model.log_probs(held_out.track, held_out.asset, held_out.layout),
    )


def test_the_metrics_on_hand_made_suggestions():
    truth = np.array([CORNER, OTHER_CORNER, FULL])
    off = [30.0, 0.9, 0.0, 0, 0, 0, 0]  # centre outside the frame: not a valid layout
    candidates = np.array(
        [
            [CORNER, FULL, FULL],  # top-1 hit
            [FULL, FULL, OTHER_CORNER],  # top-3 hit
            [off, CORNER, OTHER_CORNER],  # miss
        ]
    )
    ranked = Ranked(candidates, np.log([0.5, 0.25, 0.125]))
    scores = score(ranked, truth, Tolerance())
    assert scores["top1"] == pytest.approx(1 / 3)
    assert scores["top3"] == pytest.approx(2 / 3)
    assert scores["log_likelihood"] == pytest.approx(np.log([0.5, 0.25, 0.125]).mean())
    assert scores["valid"] == pytest.approx(2 / 3)
    assert valid_layout(np.array([[50.0, 0.0, 0.0, 60, 50, 0, 0]])).tolist() == [False]
    assert all(math.isnan(v) for v in score(ranked, truth[:0], Tolerance()).values())


def test_placements_beyond_the_vocabularys_bound_count_for_no_group(monkeypatch):
    import xmlai_assets.model.placement as placement

    monkeypatch.setattr(placement, "MAX_DISTINCT", 2)
    full = {0: (1, FULL)}
    videos = [[full, {**full, 3: (2, CORNER)}]] * 3 + [[full, {**full, 3: (2, OTHER_CORNER)}]]
    train = find_onsets(frames_of(videos))  # FULL 4 times, CORNER 3 times, OTHER_CORNER once
    vocabulary = Vocabulary.fit(train.placement)
    assert len(vocabulary) == 2
    assert vocabulary.assign(np.array([OTHER_CORNER])).tolist() == [-1]
    model = PlacementModel.fit(train, vocabulary)
    # the rare placement is counted in no group (not in the last one by a negative index)
    assert model.by_track_asset.sum() == len(train) - 1
    common = most_common(train, vocabulary)(train, 2)
    assert np.isfinite(common.true_log_prob).all()


def side_by_side(crop: float, scale: float = 100.0):
    """V1 and its V2 partner side by side, both cropped by `crop` on each side; V3 a caption
    whose scale never changes."""
    left = [scale, -0.25, 0.0, crop, crop, 0, 0]
    right = [scale, 0.25, 0.0, crop, crop, 0, 0]
    return {0: (0, left), 1: (1, right), 2: (2, FULL)}


def test_a_partners_crop_follows_its_partners_where_a_representative_is_only_near():
    videos = [[side_by_side(c)] for c in range(15, 30)] * 2
    train = find_onsets(frames_of(videos))
    vocabulary = Vocabulary.fit(train.placement)
    assert len(vocabulary) < 15  # a group holds several crops: its representative is near
    follows = fit_follows(train, vocabulary)
    partner = [f for f in follows if f.track == 1]
    # V2's crops copy V1's; nothing follows the caption, whose values never change, and
    # nothing of V2 follows V1's scale, which does not change either
    assert {(f.param, f.other, f.sign, f.offset) for f in partner} == {
        (3, 0, 1.0, 0.0), (4, 0, 1.0, 0.0),
    }  # fmt: skip
    model = PlacementModel.fit(train, vocabulary)
    model.follows = follows
    values = frames_of([[side_by_side(22.0)]]).values
    [first] = suggest_for(model, values, 0, 1, 1, top=1)
    np.testing.assert_array_equal(first.placement, [100.0, 0.25, 0.0, 22.0, 22.0, 0, 0])
    # without the rule, the group's representative: within the tolerance, not exactly
    model.follows = []
    [plain] = suggest_for(model, values, 0, 1, 1, top=1)
    assert plain.placement[3] != 22.0 and abs(plain.placement[3] - 22.0) <= 3.0
    # and the rules round-trip through the model's file
    model.follows = follows
    assert PlacementModel.from_json(model.to_json()).follows == follows


def test_a_rule_that_the_validation_onsets_contradict_is_not_kept():
    train = find_onsets(frames_of([[side_by_side(c)] for c in range(15, 30)] * 2))
    vocabulary = Vocabulary.fit(train.placement)
    # on the validation timelines the partner keeps its own crop, whatever V1's
    contrary = []
    for c in range(15, 30):
        row = side_by_side(c)
        row[1] = (1, [100.0, 0.25, 0.0, 22.0, 22.0, 0, 0])
        contrary.append([row])
    held = find_onsets(frames_of(contrary))
    [group] = np.unique(vocabulary.assign(held.placement[held.track == 1]))
    assert any(f.track == 1 and f.group == group for f in fit_follows(train, vocabulary))
    kept = fit_follows(train, vocabulary, held)
    assert not any(f.track == 1 and f.group == group for f in kept)
    # a group the validation onsets do not show keeps its rules on the training evidence
    assert any(f.track == 1 and f.group != group for f in kept)


def test_suggestions_are_distinct_after_refinement():
    """Two groups that a rule brings to the same placement give one suggestion, not two."""
    videos = [[side_by_side(c)] for c in range(15, 30)] * 2
    train = find_onsets(frames_of(videos))
    vocabulary = Vocabulary.fit(train.placement)
    model = PlacementModel.fit(train, vocabulary)
    partner_groups = np.unique(vocabulary.assign(train.placement[train.track == 1]))
    assert len(partner_groups) >= 2
    # every partner group follows V1's crops
    model.follows = [Follow(1, int(g), p, 0, 1.0, 0.0) for g in partner_groups for p in (3, 4)]
    values = frames_of([[side_by_side(22.0)]]).values
    found = suggest_for(model, values, 0, 1, 1, top=3)
    placements = np.array([s.placement for s in found])
    apart = np.abs(placements[:, None] - placements[None]) / Tolerance().limits()
    distinct = apart.max(-1) > 1.0
    assert distinct[np.triu_indices(len(found), 1)].all()
    assert [s.placement[3] for s in found].count(22.0) == 1
    assert sum(s.probability for s in found) <= 1.0 + 1e-9


def test_a_margin_is_clear_only_when_it_holds_across_timelines():
    ten = np.repeat(np.arange(10), 10)  # ten held-out timelines of ten onsets
    # the model right where the baseline is wrong once in every timeline: +0.1, and every
    # resample of the timelines says so
    spread = np.zeros(100, dtype=bool)
    spread[::10] = True
    clear = margin(ten, spread, np.zeros(100, dtype=bool))
    assert clear["difference"] == pytest.approx(0.1)
    assert clear["low"] == pytest.approx(0.1) and clear["high"] == pytest.approx(0.1)
    # the same +0.1, all of it in one timeline: a resample without it shows nothing
    lumped = np.zeros(100, dtype=bool)
    lumped[:10] = True
    unclear = margin(ten, lumped, np.zeros(100, dtype=bool))
    assert unclear["difference"] == pytest.approx(0.1)
    assert unclear["low"] <= 0.0 < unclear["high"]
    # the same inputs, the same interval
    assert margin(ten, lumped, np.zeros(100, dtype=bool)) == unclear


def test_the_context_counts_stay_bounded_however_many_groups(monkeypatch):
    import json

    import xmlai_assets.model.placement as placement

    full = {0: (1, FULL)}
    videos = [[full, {**full, 3: (2, [20.0 + 10 * i, 0.36, -0.32, 0, 0, 0, 0])}] for i in range(6)]
    train = find_onsets(frames_of(videos))
    vocabulary = Vocabulary.fit(train.placement)
    assert len(vocabulary) == 7  # FULL and six scales of the face cam
    unbounded = PlacementModel.fit(train, vocabulary)
    monkeypatch.setattr(placement, "CONTEXT_GROUPS", 2)
    bounded = PlacementModel.fit(train, vocabulary)
    # groups beyond the first two count as another placement: [K, 20, 2 + 2]
    assert bounded.seen_with.shape == (7, 20, 4)
    np.testing.assert_array_equal(bounded.seen_with[..., :2], unbounded.seen_with[..., :2])
    np.testing.assert_array_equal(bounded.seen_with[..., 2], unbounded.seen_with[..., 2:8].sum(-1))
    np.testing.assert_array_equal(bounded.seen_with[..., 3], unbounded.seen_with[..., 8])
    # the file holds the nonzero counts only, and reads back whole
    stored = json.loads(bounded.to_json())["seen_with"]
    assert len(stored["cells"]) == np.count_nonzero(bounded.seen_with)
    np.testing.assert_array_equal(
        PlacementModel.from_json(bounded.to_json()).seen_with, bounded.seen_with
    )
    # a file written with a dense column per group (before the bound) folds the same way
    dense = json.loads(unbounded.to_json())
    dense["seen_with"] = unbounded.seen_with.tolist()
    again = PlacementModel.from_json(json.dumps(dense).encode())
    np.testing.assert_array_equal(again.seen_with, bounded.seen_with)
