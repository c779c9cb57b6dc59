"""The next-step objective and the baselines, on hand-made examples."""

import math

import pytest
import torch

from xmlai_assets.model.data import Batch
from xmlai_assets.model.evaluate import (
    HAZARD_PRIOR_STEPS,
    Priors,
    calibration_error,
    evaluate,
    fair_copy,
    hazard,
    majority_mean,
    persistence,
)
from xmlai_assets.model.loss import class_weights_from, next_step_loss, next_step_targets
from xmlai_assets.model.transformer import HEADS, held_steps


def window(steps):
    """A [1, T, 180] window from per-step {track: (active, asset, scale, x)} (others 0)."""
    seq = torch.zeros(1, len(steps), 20, 9)
    for t, tracks in enumerate(steps):
        for track, (active, asset, scale, x) in tracks.items():
            seq[0, t, track] = torch.tensor([active, asset, scale, x, 0, 0, 0, 0, 0])
    return seq.reshape(1, len(steps), 180)


def uniform_outputs(batch, length):
    out = {"active": torch.zeros(batch, length, 20, 2), "asset": torch.zeros(batch, length, 20, 10)}
    out.update({p: torch.zeros(batch, length, 20) for p in HEADS[2:]})
    return out


def test_targets_are_the_next_step_and_padding_scores_nothing():
    seq = window([{0: (1, 3, 0.5, 0.0)}, {0: (1, 4, 1.5, 0.0)}, {0: (0, 0, 0.0, 0.0)}])
    masks = torch.tensor([[True, True, False]])
    t = next_step_targets(seq, masks)
    assert t.valid.tolist() == [[True, False]]
    assert t.asset[0, 0, 0] == 4 and t.values[0, 0, 0, 0] == 1.5
    assert t.on[0, 0].tolist() == [True] + [False] * 19


def test_asset_and_value_losses_ignore_inactive_targets():
    seq = window([{0: (1, 2, 1.0, 1.0), 1: (0, 0, 0, 0)}, {0: (1, 2, 2.0, 1.0), 1: (0, 0, 0, 0)}])
    masks = torch.ones(1, 2, dtype=torch.bool)
    outputs = uniform_outputs(1, 2)
    _, base = next_step_loss(outputs, seq, masks)
    assert base["scale"].item() == pytest.approx(4.0)  # only V1 scored: (0 - 2)^2
    assert base["asset"].item() == pytest.approx(math.log(10))
    assert base["active"].item() == pytest.approx(math.log(2))
    # wild predictions for the inactive track V2 change nothing but its active loss
    outputs["scale"][0, 0, 1] = 100.0
    outputs["asset"][0, 0, 1, 7] = 50.0
    _, wild = next_step_loss(outputs, seq, masks)
    assert wild["scale"] == base["scale"] and wild["asset"] == base["asset"]
    # and the same for V1, which is on, does change them
    outputs["scale"][0, 0, 0] = 100.0
    outputs["asset"][0, 0, 0, 7] = 50.0
    _, on = next_step_loss(outputs, seq, masks)
    assert on["scale"] > base["scale"] and on["asset"] > base["asset"]


def test_loss_weights_scale_each_head():
    seq = window([{0: (1, 2, 1.0, 1.0)}, {0: (1, 2, 2.0, 3.0)}])
    masks = torch.ones(1, 2, dtype=torch.bool)
    total, parts = next_step_loss(uniform_outputs(1, 2), seq, masks, {"x": 0.0, "scale": 2.0})
    expected = sum(parts.values()) - parts["x"] + parts["scale"]
    assert total.item() == pytest.approx(expected.item())


def test_class_weights_come_from_class_frequencies():
    seq = window([{0: (1, 1, 0, 0), 1: (1, 1, 0, 0), 2: (1, 2, 0, 0)}])
    weights = class_weights_from(seq, torch.ones(1, 1, dtype=torch.bool))
    # active: 17 off, 3 on; asset among the on: 2x class 1, 1x class 2
    assert weights["active"][1] / weights["active"][0] == pytest.approx(17 / 3)
    assert weights["asset"][2] / weights["asset"][1] == pytest.approx(2.0)
    assert weights["asset"][0] == 0


def test_baselines_on_a_hand_made_timeline():
    # V1 holds asset 3 for three steps, then switches to asset 5 and moves from x 0 to x 2
    steps = [{0: (1, 3, 0.0, 0.0)}] * 3 + [{0: (1, 5, 0.0, 2.0)}]
    seq = window(steps)
    batch = Batch(seq, torch.ones(1, 4, dtype=torch.bool))
    priors = Priors.from_training([batch])
    # V1's asset stayed 2 of 3 times: (2 + 1) / (3 + 2) with add-one smoothing
    assert priors.stay["asset"] == pytest.approx(3 / 5)
    copy = evaluate(persistence(priors), [batch], value_scale={"x": 10.0})
    assert copy["asset_acc"] == pytest.approx(2 / 3)
    assert copy["x_mae"] == pytest.approx(10.0 * 2 / 3)  # 2 scaled units off once, x10 units
    # split by what the input showed, never by the outcome: x had not moved before any step,
    # so every step is a hold step, the one that then moved included
    assert copy["x_mae_hold"] == copy["x_mae"]
    assert math.isnan(copy["x_mae_move"]) and math.isnan(copy["x_mae_onset"])
    assert copy["active_acc"] == 1.0
    assert copy["loss_asset"] == pytest.approx(-(2 * math.log(3 / 5) + math.log((2 / 5) / 9)) / 3)
    mean = evaluate(majority_mean(priors), [batch], value_scale={"x": 10.0})
    # V1's mean x over its 4 on-screen steps is 0.5: errors 0.5, 0.5, 1.5 scaled units
    assert mean["x_mae"] == pytest.approx(10.0 * (0.5 + 0.5 + 1.5) / 3)
    # majority asset on V1 is 3 (3 of 4 steps): right twice, wrong on the switch
    assert mean["asset_acc"] == pytest.approx(2 / 3)


def test_the_fair_copy_copies_each_tracks_state_with_its_own_chance_of_staying():
    # V1 on for 4 steps then off for 2; V2 off, then on for 2 steps with x 1.5
    steps = [{0: (1, 3, 0.0, 0.0)}] * 4 + [{}] * 2 + [{1: (1, 2, 0.0, 1.5)}] * 2
    seq = window(steps)
    batch = Batch(seq, torch.ones(1, len(steps), dtype=torch.bool))
    priors = Priors.from_training([batch])
    # V1: on at 4 steps before another, stayed on 3 times; off at 3, stayed off all 3 times
    assert priors.track_stay[0, 1].item() == pytest.approx((3 + 1) / (4 + 2))
    assert priors.track_stay[0, 0].item() == pytest.approx((3 + 1) / (3 + 2))
    # V2: off 6 times, stayed off 5 times; on once (step 7 -> 8), stayed on once
    assert priors.track_stay[1, 0].item() == pytest.approx((5 + 1) / (6 + 2))
    assert priors.track_stay[1, 1].item() == pytest.approx((1 + 1) / (1 + 2))
    # a track that never comes on (V3) is predicted off, by its own chance of staying off
    out = fair_copy(priors)(batch)
    p_on = out["active"].exp()[0, :, :, 1]
    assert torch.allclose(p_on[:, 2], torch.full((len(steps),), 1 - (7 + 1) / (7 + 2)))
    # an off track is copied as off, and its values are its usual ones, not the placeholder
    assert p_on[0, 1].item() == pytest.approx(1 - priors.track_stay[1, 0].item())
    assert out["x"][0, 0, 1].item() == pytest.approx(1.5)  # V2's mean x when on
    # an on track keeps its values exactly
    assert out["x"][0, 6, 1].item() == pytest.approx(1.5)
    assert out["asset"].exp()[0, 0, 0].argmax().item() == 3
    # V2's onset: the placeholder copy guesses x 0, the fair copy V2's usual 1.5 (exact here)
    fair = evaluate(fair_copy(priors), [batch], value_scale={"x": 1.0})
    plain = evaluate(persistence(priors), [batch], value_scale={"x": 1.0})
    assert fair["x_mae_onset"] == pytest.approx(0.0) and plain["x_mae_onset"] == 1.5


def test_overlapping_windows_score_each_step_once():
    # 15 steps of one video: V1 on, x rising; cut as windows of 10 every 5 steps, or as one
    steps = [{0: (1, t % 3, 0.0, float(t))} for t in range(15)]
    whole = window(steps)
    one = Batch(whole, torch.ones(1, 15, dtype=torch.bool))
    cut = torch.zeros(2, 15, 180)
    cut[0, :10], cut[1, :10] = whole[0, :10], whole[0, 5:15]
    masks = torch.zeros(2, 15, dtype=torch.bool)
    masks[:, :10] = True
    # the second window's targets 6..9 were the first's: it scores from its step 4 on
    from xmlai_assets.features.windows import first_targets

    first = torch.as_tensor(first_targets(torch.tensor([0, 5]).numpy(), 10, 5)).long()
    assert first.tolist() == [0, 4]
    two = Batch(cut, masks, first)
    priors = Priors.from_training([one])
    as_one = evaluate(majority_mean(priors), [one], value_scale={"x": 1.0})
    as_two = evaluate(majority_mean(priors), [two], value_scale={"x": 1.0})
    assert as_two["x_mae"] == pytest.approx(as_one["x_mae"])
    assert as_two["loss"] == pytest.approx(as_one["loss"])
    twice = evaluate(majority_mean(priors), [Batch(cut, masks)], value_scale={"x": 1.0})
    assert twice["x_mae"] != pytest.approx(as_one["x_mae"])  # scored twice, it would differ


def test_turn_on_and_off_events_rank_the_flips():
    # V2 turns on at step 3 and off at step 6, twice over two windows; V1 always on
    steps = [
        {0: (1, 0, 0.0, 0.0), **({1: (1, 1, 0.0, 0.0)} if 3 <= t < 6 else {})} for t in range(8)
    ]
    seq = window(steps).repeat(2, 1, 1)
    batch = Batch(seq, torch.ones(2, 8, dtype=torch.bool))

    def knowing(batch):  # gives the flips the highest chance, and nothing else
        out = uniform_outputs(2, 8)
        on_next = torch.zeros(2, 8, 20)
        on_next[:, :, 0] = 1
        on_next[:, 2:5, 1] = 1  # V2 is on at steps 3..5: predicted at 2..4
        out["active"] = torch.stack([1 - on_next, on_next], -1).clamp(0.01, 0.99).log()
        return out

    perfect = evaluate(knowing, [batch], value_scale={})
    assert perfect["turn_on_ap"] == 1.0 and perfect["turn_on_auroc"] == 1.0
    assert perfect["turn_off_ap"] == 1.0 and perfect["turn_off_auroc"] == 1.0
    blind = evaluate(lambda b: uniform_outputs(2, 8), [batch], value_scale={})
    # a constant chance ranks nothing: AUROC 0.5, AP the share of flips
    assert blind["turn_on_auroc"] == 0.5
    assert blind["turn_on_ap"] == pytest.approx(1 / 4)  # V2 off at 0,1,2 and 6: one turns on
    assert blind["turn_off_ap"] == pytest.approx(1 / 3)  # V2 on at 3,4,5: one turns off


def test_held_steps_count_from_the_last_change_within_the_window():
    active = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0, 0, 1]])[..., None]
    assert held_steps(active)[0, :, 0].tolist() == [1, 2, 1, 2, 3, 1, 2, 3, 4, 1]


def test_the_hazard_table_learns_how_long_an_overlay_lasts():
    # V2 is on for exactly 3 steps, then off for exactly 2, eight times; V1 is always on and
    # V3..V20 always off
    pattern = [1, 1, 1, 0, 0] * 8
    steps = [{0: (1, 0, 0.0, 0.0), **({1: (1, 2, 0.0, 0.0)} if on else {})} for on in pattern]
    batch = Batch(window(steps), torch.ones(1, len(steps), dtype=torch.bool))
    priors = Priors.from_training([batch])
    k = HAZARD_PRIOR_STEPS
    on, off = priors.hazard[1, 1], priors.hazard[1, 0]  # V2, by held bucket 1, 2, 3-4, ...
    # on, held 3: V2 flipped all 8 times; V1 was there twice (held 3 and 4) and stayed
    assert on[2].item() == pytest.approx((8 + k * (8 + 1) / (10 + 2)) / (8 + k))
    # on, held 1: V2 stayed all 8 times, V1 once
    assert on[0].item() == pytest.approx((0 + k * 1 / (9 + 2)) / (8 + k))
    # off, held 2: V2 flipped 7 times (the 8th run ends the window); V3..V20 stayed once each
    assert off[1].item() == pytest.approx((7 + k * (7 + 1) / (25 + 2)) / (7 + k))
    assert off[0].item() == pytest.approx((0 + k * 1 / (26 + 2)) / (8 + k))
    # the hazard predictor ranks V2's flips perfectly; the fair copy, whose chance is the same
    # at every step of a state, ranks them no better than their share
    with_hazard = evaluate(hazard(priors), [batch], value_scale={})
    copied = evaluate(fair_copy(priors), [batch], value_scale={})
    assert with_hazard["turn_on_ap"] == pytest.approx(1.0)
    assert with_hazard["turn_off_ap"] == pytest.approx(1.0)
    assert copied["turn_on_ap"] == pytest.approx(7 / 15)  # 7 onsets in 15 off steps
    assert copied["turn_off_ap"] == pytest.approx(8 / 24)
    assert with_hazard["loss_active"] < copied["loss_active"]
    # everything but on/off is the fair copy's
    for key in ("loss_asset", "loss_x", "asset_acc"):
        assert with_hazard[key] == pytest.approx(copied[key])


def test_value_errors_split_by_what_the_input_shows_onset_hold_and_move():
    # V1 on throughout at x 0; V2 off, then on at x 1.5, held, then moving to 2.0 and 2.5
    v2 = [None, None, 1.5, 1.5, 2.0, 2.5]
    steps = [{0: (1, 0, 0.0, 0.0), **({1: (1, 1, 0.0, x)} if x is not None else {})} for x in v2]
    batch = Batch(window(steps), torch.ones(1, len(steps), dtype=torch.bool))
    priors = Priors.from_training([batch])
    copy = evaluate(persistence(priors), [batch], value_scale={"x": 10.0})
    # the copy of the previous step, in original units (10 per scaled unit):
    # - from step 1, V2 off: the placeholder 0 for its onset at 1.5;
    # - from steps 2 (just on) and 3 (held): still, whatever comes next: exact, then 0.5 off;
    # - from step 4, moving (1.5 to 2.0): 0.5 behind
    assert copy["x_mae_onset"] == pytest.approx(15.0)
    assert copy["x_mae_hold"] == pytest.approx(5.0 / 7)  # V1's five steps and V2's two
    assert copy["x_mae_move"] == pytest.approx(5.0)
    # 9 scored on-targets: V1 at steps 1..5, V2 at 2..5
    assert copy["x_mae"] == pytest.approx((15.0 + 5.0 + 5.0) / 9)


def test_turning_on_within_a_second_is_scored_where_the_window_shows_the_second():
    # V2 comes on at step 5 of an 8-step window; V1 always on. Horizon 3 steps.
    steps = [{0: (1, 0, 0.0, 0.0), **({1: (1, 1, 0.0, 0.0)} if t >= 5 else {})} for t in range(8)]
    batch = Batch(window(steps), torch.ones(1, 8, dtype=torch.bool))

    def sooner_higher(batch):  # V2's chance of turning on rises as its onset nears
        out = uniform_outputs(1, 8)
        p = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.5, 0.5, 0.5])
        out["active"][0, :, 1] = torch.stack([1 - p, p], -1).log()
        return out

    scores = evaluate(sooner_higher, [batch], value_scale={}, horizon=3)
    # next step: only step 4 turns on, and it has the highest chance of the off steps
    assert scores["turn_on_ap"] == 1.0
    # within 3 steps: steps 2, 3, 4 see the onset, 0 and 1 do not; steps 5..6 are on (not in
    # this event) and step 7 has no target. Window ends on a real step: steps from 5 on would
    # need steps past the window; every off step (0..4) has its 3 steps inside it
    assert scores["turn_on_ap_1s"] == 1.0 and scores["turn_on_auroc_1s"] == 1.0
    blind = evaluate(lambda b: uniform_outputs(1, 8), [batch], value_scale={}, horizon=3)
    assert blind["turn_on_ap_1s"] == pytest.approx(3 / 5)  # the share: 3 of 5 off steps
    # V2 off at steps 0..3, on at 4, the timeline's last step. Within 3 steps, step 0 sees no
    # onset and steps 1..3 do. A window that ends with padding (the timeline ended inside it)
    # shows every step's remaining future: all four off steps are scored. A window of exactly
    # those 5 steps, which might go on, shows 3 steps ahead of steps 0 and 1 only.
    short = [{0: (1, 0, 0.0, 0.0)}] * 4 + [{0: (1, 0, 0.0, 0.0), 1: (1, 1, 0.0, 0.0)}]
    padded = Batch(window(short + [{}] * 3), torch.tensor([[True] * 5 + [False] * 3]))
    cut = Batch(window(short), torch.ones(1, 5, dtype=torch.bool))
    ends = evaluate(lambda b: uniform_outputs(1, 8), [padded], value_scale={}, horizon=3)
    seen = evaluate(lambda b: uniform_outputs(1, 5), [cut], value_scale={}, horizon=3)
    assert ends["turn_on_ap_1s"] == pytest.approx(3 / 4)
    assert seen["turn_on_ap_1s"] == pytest.approx(1 / 2)


def test_log_loss_and_brier_score_the_chance_by_the_state_it_starts_from():
    steps = [{0: (1, 0, 0.0, 0.0), **({1: (1, 1, 0.0, 0.0)} if t >= 3 else {})} for t in range(6)]
    batch = Batch(window(steps), torch.ones(1, 6, dtype=torch.bool))
    coin = evaluate(lambda b: uniform_outputs(1, 6), [batch], value_scale={})
    for state in ("turn_on", "turn_off"):  # a chance of 1/2 everywhere
        assert coin[f"{state}_logloss"] == pytest.approx(math.log(2))
        assert coin[f"{state}_brier"] == pytest.approx(0.25)

    def sure(batch):  # V1 and V2 stay as they are, surely; V2 turns on at 3 with chance 0.9
        out = uniform_outputs(1, 6)
        p_on = torch.zeros(6, 20)
        p_on[:, 0], p_on[3:, 1], p_on[2, 1] = 1.0, 1.0, 0.9
        out["active"][0] = torch.stack([1 - p_on, p_on], -1).clamp(1e-12, 1).log()
        return out

    scores = evaluate(sure, [batch], value_scale={})
    # off steps of V2 (0, 1, 2): chance 0, 0, 0.9, and only the last turns on
    assert scores["turn_on_logloss"] == pytest.approx(-math.log(0.9) / 3, abs=1e-6)
    assert scores["turn_on_brier"] == pytest.approx(0.01 / 3)
    assert scores["turn_off_logloss"] == pytest.approx(0.0, abs=1e-6)


def test_the_calibration_error_of_a_chance():
    happened = torch.tensor([1] + [0] * 9).numpy().astype(bool)
    assert calibration_error(torch.full((10,), 0.1).numpy(), happened) == pytest.approx(0, abs=1e-8)
    assert calibration_error(torch.full((10,), 0.9).numpy(), happened) == pytest.approx(0.8)
    # one element in each of the ten bins: each element's own error
    chance = (torch.arange(10, dtype=torch.float64) / 10 + 0.05).numpy()
    assert calibration_error(chance, happened) == pytest.approx((0.95 + sum(chance[1:])) / 10)
    assert math.isnan(calibration_error(chance[:0], happened[:0]))
