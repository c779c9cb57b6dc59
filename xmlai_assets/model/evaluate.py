"""Validation metrics of the model and of the trivial baselines it has to beat.

- `persistence` copies the previous step. Its class probabilities put the share of the
  training split's steps that kept their class on the previous class, and spread the rest over
  the other classes, so its cross-entropy is finite and as good as copying can be.
- `majority_mean` ignores the past: each track's class frequencies and mean values over the
  training split.
- `fair_copy` copies each track's last state as fairly as copying can: a track that was off is
  predicted off (and, should it come on, with that track's usual asset and mean values, not the
  placeholders), and its chance of staying in its state is that track's own, for that state,
  from the training split (most tracks are never on, so a pooled chance flatters copying).
- `hazard` is the fair copy with a duration-aware chance of turning on or off: each track's rate
  of flipping given its state and how long it has held it (in buckets from 0.1 s to 10 s), from
  the training split, drawn towards the rate of all tracks where a track has few steps. The
  bar for on/off prediction: overlays last seconds, and so do the gaps between them.

Metrics are broken down by what held at the step a prediction is made from (a track on or
off, a value held or moving), never by the outcome: a subset chosen by the outcome rewards
always predicting it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

from xmlai_assets.model.data import Batch
from xmlai_assets.model.loss import Targets, element_losses, next_step_targets
from xmlai_assets.model.transformer import (
    HEADS,
    MOVED,
    N_ASSETS,
    N_HELD,
    N_PARAMS,
    copied_asset_log_chances,
    hazard_cell,
    hazard_log_chances,
)
from xmlai_assets.timeline.schema import ACTIVE, ASSET, CONTINUOUS_PARAMS, ON, VALUES

Predictor = Callable[[Batch], Mapping[str, torch.Tensor]]


@dataclass
class Priors:
    """What the baselines know of the training split."""

    stay: dict[str, float]  # share of consecutive real steps that keep active / asset
    active_freq: torch.Tensor  # [20, 2]
    asset_freq: torch.Tensor  # [20, 10], over active entries
    value_mean: torch.Tensor  # [20, 7], scaled units, over active entries
    track_stay: torch.Tensor  # [20, 2]: chance a track off (0) or on (1) stays so a step later
    track_asset_stay: torch.Tensor  # [20]: chance an on track keeps its asset a step later
    # [20, 2, len(HELD_EDGES) + 1]: chance a track in a state (off, on), held for a number of
    # steps in a bucket of HELD_EDGES, flips at the next step
    hazard: torch.Tensor
    # [20, 2, 7]: chance each value of a track on at the next step differs from where it
    # starts: its usual value (`value_mean`) when the track was off, its current one when on
    move_chance: torch.Tensor

    @classmethod
    def from_training(cls, batches: Iterable[Batch], n_tracks: int = 20) -> Priors:
        batches = [batch.to("cpu") for batch in batches]  # read twice; the counts are kept here
        same = {"active": [0.0, 0.0], "asset": [0.0, 0.0]}
        kept_by_state = torch.zeros(n_tracks, 2, dtype=torch.float64)
        seen_by_state = torch.zeros(n_tracks, 2, dtype=torch.float64)
        asset_kept = torch.zeros(n_tracks, dtype=torch.float64)
        asset_seen = torch.zeros(n_tracks, dtype=torch.float64)
        active_counts = torch.zeros(n_tracks, 2, dtype=torch.float64)
        asset_counts = torch.zeros(n_tracks, N_ASSETS, dtype=torch.float64)
        value_sum = torch.zeros(n_tracks, N_PARAMS - 2, dtype=torch.float64)
        value_count = torch.zeros(n_tracks, N_PARAMS - 2, dtype=torch.float64)
        flips_by_held = torch.zeros(n_tracks * 2 * N_HELD, dtype=torch.float64)
        seen_by_held = torch.zeros(n_tracks * 2 * N_HELD, dtype=torch.float64)
        for batch in batches:
            tracks = _tracks(batch.sequences)
            real = tracks[batch.masks]  # [steps, 20, 9]
            active = real[..., ACTIVE].round().long().clamp(0, 1)
            asset = real[..., ASSET].round().long().clamp(0, N_ASSETS - 1)
            on = (active == 1).double()
            active_counts += F.one_hot(active, 2).double().sum(0)
            asset_counts += (F.one_hot(asset, N_ASSETS).double() * on[..., None]).sum(0)
            values = real[..., VALUES].double()
            counted = on[..., None] * torch.isfinite(values)  # a non-finite value says nothing
            value_sum += (values.nan_to_num(0.0, 0.0, 0.0) * counted).sum(0)
            value_count += counted.sum(0)
            t = next_step_targets(batch.sequences, batch.masks)
            prev = _tracks(batch.sequences[:, :-1])
            pairs = t.valid[..., None].expand_as(t.active)
            prev_active = prev[..., ACTIVE].round().long().clamp(0, 1)
            kept = t.active == prev_active
            same["active"][0] += float((kept & pairs).sum())
            same["active"][1] += float(pairs.sum())
            state = F.one_hot(prev_active, 2).double() * pairs[..., None]  # [B, T, 20, 2]
            seen_by_state += state.sum((0, 1))
            kept_by_state += (state * kept[..., None]).sum((0, 1))
            both_on = t.on & (prev_active == 1)
            kept = t.asset == prev[..., ASSET].round().long()
            same["asset"][0] += float((kept & both_on).sum())
            same["asset"][1] += float(both_on.sum())
            asset_kept += (kept & both_on).double().sum((0, 1))
            asset_seen += both_on.double().sum((0, 1))
            cell = hazard_cell(prev_active)[pairs]  # each pair's (track, state, held) cell
            flipped = (t.active != prev_active)[pairs].double()
            flips_by_held.index_add_(0, cell, flipped)
            seen_by_held.index_add_(0, cell, torch.ones_like(flipped))
        value_mean = (value_sum / value_count.clamp(min=1)).float()
        moves = torch.zeros(n_tracks, 2, N_PARAMS - 2, dtype=torch.float64)
        seen = torch.zeros(n_tracks, 2, 1, dtype=torch.float64)
        for batch in batches:
            t = next_step_targets(batch.sequences, batch.masks)
            prev = _tracks(batch.sequences[:, :-1])
            was_on = (prev[..., ACTIVE].round() == 1)[..., None]
            start = torch.where(was_on, prev[..., VALUES], value_mean)
            moved = ((t.values - start).abs() > MOVED).double()  # [B, T-1, 20, 7]
            state = F.one_hot(was_on[..., 0].long(), 2).double() * t.on[..., None]
            moves += torch.einsum("btks,btkp->ksp", state, moved)
            seen += state.sum((0, 1))[..., None]
        return cls(
            stay={k: (s + 1.0) / (n + 2.0) for k, (s, n) in same.items()},
            active_freq=((active_counts + 1) / (active_counts + 1).sum(1, keepdim=True)).float(),
            asset_freq=((asset_counts + 1) / (asset_counts + 1).sum(1, keepdim=True)).float(),
            value_mean=value_mean,
            # add-one smoothing: a track never seen in a state gets 2/3 of staying there
            track_stay=((kept_by_state + 1.0) / (seen_by_state + 2.0)).float(),
            track_asset_stay=((asset_kept + 1.0) / (asset_seen + 2.0)).float(),
            hazard=_smoothed_hazard(
                flips_by_held.reshape(n_tracks, 2, N_HELD),
                seen_by_held.reshape(n_tracks, 2, N_HELD),
            ),
            move_chance=((moves + 1.0) / (seen + 2.0)).float(),
        )


# A track's own flip counts weigh against the rate of all tracks as this many steps would.
HAZARD_PRIOR_STEPS = 10.0


def _smoothed_hazard(flips: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """Each track's flip rate per (state, held bucket), drawn towards the rate of all tracks in
    that cell (add-one smoothed) by HAZARD_PRIOR_STEPS."""
    pooled = (flips.sum(0) + 1.0) / (seen.sum(0) + 2.0)
    return ((flips + HAZARD_PRIOR_STEPS * pooled) / (seen + HAZARD_PRIOR_STEPS)).float()


def _tracks(sequences: torch.Tensor) -> torch.Tensor:
    return sequences.reshape(*sequences.shape[:-1], -1, N_PARAMS)


def persistence(priors: Priors) -> Predictor:
    """Copy the previous step: its class with the training split's chance of staying."""

    def predict(batch: Batch) -> dict[str, torch.Tensor]:
        tracks = _tracks(batch.sequences)
        out = {}
        for head, i, classes in (("active", 0, 2), ("asset", 1, N_ASSETS)):
            current = tracks[..., i].round().long().clamp(0, classes - 1)
            stay = priors.stay[head]
            probs = torch.full((*current.shape, classes), (1 - stay) / (classes - 1))
            probs.scatter_(-1, current[..., None], stay)
            out[head] = probs.log()
        for i, param in enumerate(CONTINUOUS_PARAMS):
            out[param] = tracks[..., 2 + i].clone()
        return out

    return predict


def fair_copy(priors: Priors) -> Predictor:
    """Copy each track's last state, with that track's chance of staying in it; a track that
    was off gets its usual asset and mean values, should it come on."""

    def predict(batch: Batch) -> dict[str, torch.Tensor]:
        tracks = _tracks(batch.sequences)
        active = tracks[..., ACTIVE].round().long().clamp(0, 1)  # [B, T, 20]
        stay = torch.where(active == 1, priors.track_stay[:, 1], priors.track_stay[:, 0])
        p_on = torch.where(active == 1, stay, 1 - stay)
        probs = torch.stack([1 - p_on, p_on], -1)
        asset = tracks[..., ASSET].round().long().clamp(0, N_ASSETS - 1)
        out = {
            "active": probs.log(),
            "asset": copied_asset_log_chances(
                active, asset, priors.track_asset_stay, priors.asset_freq
            ),
        }
        for i, param in enumerate(CONTINUOUS_PARAMS):
            value = tracks[..., VALUES][..., i]
            out[param] = torch.where(active == 1, value, priors.value_mean[:, i])
        return out

    return predict


def hazard(priors: Priors) -> Predictor:
    """The fair copy, with the chance of a track turning on or off taken from how long it has
    held its state (`Priors.hazard`): overlays last seconds, gaps between them too."""
    copy = fair_copy(priors)

    def predict(batch: Batch) -> dict[str, torch.Tensor]:
        out = copy(batch)
        active = _tracks(batch.sequences)[..., ACTIVE].round().long().clamp(0, 1)
        out["active"] = hazard_log_chances(active, priors.hazard.to(active.device))
        return out

    return predict


def majority_mean(priors: Priors) -> Predictor:
    """Each track's training class frequencies and mean values, whatever came before."""

    def predict(batch: Batch) -> dict[str, torch.Tensor]:
        shape = batch.sequences.shape[:2]
        out = {
            "active": priors.active_freq.log().expand(*shape, -1, -1),
            "asset": priors.asset_freq.log().expand(*shape, -1, -1),
        }
        for i, param in enumerate(CONTINUOUS_PARAMS):
            out[param] = priors.value_mean[:, i].expand(*shape, -1)
        return out

    return predict


def model_predictor(model: torch.nn.Module, device: torch.device | str = "cpu") -> Predictor:
    def predict(batch: Batch) -> Mapping[str, torch.Tensor]:
        b = batch.to(device)
        with torch.no_grad():
            return {k: v.float().cpu() for k, v in model(b.sequences, b.masks).items()}

    return predict


class _Sums:
    """Weighted means accumulated over batches."""

    def __init__(self) -> None:
        self.sum: dict[str, float] = {}
        self.n: dict[str, float] = {}

    def add(self, key: str, values: torch.Tensor, weight: torch.Tensor) -> None:
        weight = weight.to(torch.float64)
        self.sum[key] = self.sum.get(key, 0.0) + float((values.double() * weight).sum())
        self.n[key] = self.n.get(key, 0.0) + float(weight.sum())

    def mean(self, key: str) -> float:
        n = self.n.get(key, 0.0)
        return self.sum[key] / n if n else math.nan


EPSILON = 1e-7  # probabilities are kept this far from 0 and 1 in log-loss
CALIBRATION_BINS = 10


class _Events:
    """The chance each scored track gives of flipping (turning on if off, off if on) at the next
    step, beside whether it did, and whether it flipped within the next `horizon` steps (where
    the window shows them all), gathered over batches."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def add(
        self, logits: torch.Tensor, active: torch.Tensor, masks: torch.Tensor, scored: torch.Tensor
    ) -> None:
        """`logits` [B, T-1, 20, 2] from steps 0..T-2, `active` [B, T, 20] (0/1) and `masks`
        [B, T] of the window, `scored` [B, T-1, 20]: the elements scored."""
        p_on = logits.float().softmax(-1)[..., ON]
        active = active.round().long()
        was_on = active[:, :-1] == 1
        flip = torch.where(was_on, 1 - p_on, p_on)
        tracks = torch.arange(p_on.shape[-1], device=p_on.device).expand_as(p_on)
        later = torch.zeros_like(was_on)
        steps = active.shape[1] - 1
        for k in range(1, self.horizon + 1):  # a flip k steps on, on a real step
            if k > steps:
                break
            moved = (active[:, k:] != active[:, :-k]) & masks[:, k:, None]
            later[:, : steps - k + 1] |= moved
        # the horizon is seen whole where it ends inside the window, or where the timeline ends
        # (padding) before the window does
        seen = torch.arange(steps, device=masks.device)[None, :] + self.horizon < masks.shape[1]
        seen = (seen | ~masks[:, -1:])[..., None] & scored
        self.parts.append(
            tuple(
                x.detach().cpu()
                for x in (
                    flip[scored],
                    (active[:, 1:] != active[:, :-1])[scored],
                    was_on[scored],
                    tracks[scored],
                    later[scored],
                    seen[scored],
                )
            )
        )

    def metrics(self) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        if not self.parts:
            return {}
        columns = zip(*self.parts, strict=True)
        score, flipped, was_on, track, later, seen = (torch.cat(x).numpy() for x in columns)
        live = np.isin(track, np.unique(track[was_on | flipped]))  # tracks that are ever on
        out = {}
        horizons = [("", flipped, live)]
        if self.horizon:
            horizons.append(("_1s", later, live & seen))
        for name, state in (("turn_on", False), ("turn_off", True)):
            for suffix, event, rows_of in horizons:
                ap, auroc = [], []
                for t in np.unique(track[rows_of]):
                    rows = rows_of & (track == t) & (was_on == state)
                    y = event[rows]
                    if y.any() and not y.all():
                        ap.append(average_precision_score(y, score[rows]))
                        auroc.append(roc_auc_score(y, score[rows]))
                out[f"{name}_ap{suffix}"] = float(np.mean(ap)) if ap else math.nan
                out[f"{name}_auroc{suffix}"] = float(np.mean(auroc)) if auroc else math.nan
            # the chance of the next step, scored on every step of this state of a live track
            rows = live & (was_on == state)
            p, y = np.clip(score[rows], EPSILON, 1 - EPSILON), flipped[rows]
            out[f"{name}_logloss"] = (
                float(-np.mean(np.where(y, np.log(p), np.log1p(-p)))) if rows.any() else math.nan
            )
            out[f"{name}_brier"] = float(np.mean((p - y) ** 2)) if rows.any() else math.nan
        out["flip_calibration_error"] = calibration_error(score[live], flipped[live])
        return out


def calibration_error(chance: np.ndarray, happened: np.ndarray) -> float:
    """Expected calibration error: the elements put in `CALIBRATION_BINS` bins of `chance`
    of equal width over 0..1; the mean over elements of |mean chance - share that happened|
    of their bin. 0 for a perfectly calibrated chance; NaN for no elements."""
    if not len(chance):
        return math.nan
    chance = chance.astype(np.float64)
    bins = np.minimum((chance * CALIBRATION_BINS).astype(np.int64), CALIBRATION_BINS - 1)
    said = np.bincount(bins, weights=chance, minlength=CALIBRATION_BINS)
    seen = np.bincount(bins, weights=happened.astype(np.float64), minlength=CALIBRATION_BINS)
    return float(np.abs(said - seen).sum() / len(chance))


def evaluate(
    predict: Predictor,
    batches: Iterable[Batch],
    *,
    value_scale: Mapping[str, float],
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
    horizon: int = 0,
) -> dict[str, float]:
    """Metrics of `predict` over `batches`.

    Keys: `loss_<head>` (the training loss of each head) and `loss` (their weighted sum);
    `active_acc`; `asset_acc` (on active targets); `<param>_mae` in original units
    (`value_scale[param]` original units per scaled unit), from the predictions, also split by
    what the track was doing: `<param>_mae_onset` (it was off), `_mae_hold` (it was on and its
    value had not moved over the last step), `_mae_move` (it had). The on/off events, on the
    tracks that are ever on: `turn_on_ap`, `turn_on_auroc` (how well the chance of turning on
    at the next step ranks the steps where it does, averaged over those tracks), the same
    within the next second (`_1s`, `horizon` steps; ranked by the same next-step chance,
    scored where the window shows the whole second), `turn_on_logloss` and `turn_on_brier` (of
    that chance on every step a track was off), all again as `turn_off_*` for steps a track
    was on, and `flip_calibration_error` of the chance of flipping. NaN where nothing was
    scored.
    """
    sums = _Sums()
    events = _Events(horizon)
    for batch in batches:
        outputs = predict(batch)
        targets = next_step_targets(batch.sequences, batch.masks)
        tracks = _tracks(batch.sequences)
        prev = tracks[:, :-1]
        was_on = prev[..., ACTIVE].round() == 1
        # whether each value moved over the step before, the track on at both (what the input
        # shows; none at step 0, nor on the step a track comes on)
        moving = torch.zeros_like(prev[..., VALUES], dtype=torch.bool)
        step = (tracks[:, 1:-1, :, VALUES] - tracks[:, :-2, :, VALUES]).abs() > MOVED
        on_both = was_on[:, 1:] & (prev[:, :-1, :, ACTIVE].round() == 1)
        moving[:, 1:] = step & on_both[..., None]
        for head, (loss, weight) in _scored_once(batch, outputs, targets, class_weights):
            scored = weight > 0
            sums.add(f"loss_{head}", loss, weight)
            if head == "active":
                events.add(outputs["active"][:, :-1], tracks[..., ACTIVE], batch.masks, scored)
            if head in ("active", "asset"):
                hit = outputs[head][:, :-1].argmax(-1) == getattr(targets, head)
                sums.add(f"{head}_acc", hit, scored)
            elif head in CONTINUOUS_PARAMS:
                i = CONTINUOUS_PARAMS.index(head)
                predicted = outputs[head][:, :-1].float()
                scale = float(value_scale.get(head, 1.0))
                error = ((predicted - targets.values[..., i]).abs() * scale).detach()
                sums.add(f"{head}_mae", error, scored)
                sums.add(f"{head}_mae_onset", error, scored & ~was_on)
                sums.add(f"{head}_mae_hold", error, scored & was_on & ~moving[..., i])
                sums.add(f"{head}_mae_move", error, scored & was_on & moving[..., i])
    metrics = {key: sums.mean(key) for key in sorted(sums.n)} | events.metrics()
    metrics["loss"] = _weighted_total([metrics[f"loss_{h}"] for h in HEADS], weights)
    return metrics


def validation_loss(
    model: torch.nn.Module,
    batches: Iterable[Batch],
    *,
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> float:
    """`evaluate(...)["loss"]` of `model` alone, computed where the batches live and read back
    once: the training loop's validation, cheap enough for every epoch on a GPU."""
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for batch in batches:
            outputs = model(batch.sequences, batch.masks)
            targets = next_step_targets(batch.sequences, batch.masks)
            for head, (loss, weight) in _scored_once(batch, outputs, targets, class_weights):
                weight = weight.double()
                sums[head] = sums.get(head, 0.0) + (loss.double() * weight).sum()
                counts[head] = counts.get(head, 0.0) + weight.sum()
    if not sums:
        return math.nan
    read = torch.stack([torch.stack([sums[h], counts[h]]) for h in HEADS]).cpu().tolist()
    return _weighted_total([s / n if n else math.nan for s, n in read], weights)


def _scored_once(
    batch: Batch,
    outputs: Mapping[str, torch.Tensor],
    targets: Targets,
    class_weights: Mapping[str, torch.Tensor] | None,
) -> Iterator[tuple[str, tuple[torch.Tensor, torch.Tensor]]]:
    """`element_losses`, with each step scored once: a window's targets that the window before
    it scored get weight 0 (`batch.first_targets`)."""
    first = batch.first_targets
    once = None
    if first is not None:
        steps = torch.arange(batch.sequences.shape[1] - 1, device=first.device)
        once = steps[None, :] >= first[:, None]
    for head, (loss, weight) in element_losses(outputs, targets, class_weights).items():
        if once is not None:
            weight = weight * once.reshape(*once.shape, *([1] * (weight.ndim - 2)))
        yield head, (loss, weight)


def _weighted_total(parts: list[float], weights: Mapping[str, float] | None) -> float:
    """The weighted sum of the heads' losses (in HEADS order); a head that scored nothing
    adds 0."""
    weights = weights or {}
    return sum(
        weights.get(h, 1.0) * (0.0 if math.isnan(p) else p)
        for h, p in zip(HEADS, parts, strict=True)
    )


def evaluate_against_baselines(
    predict: Predictor,
    batches: list[Batch],
    priors: Priors,
    *,
    value_scale: Mapping[str, float],
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
    horizon: int = 0,
) -> dict[str, dict[str, float]]:
    """{"model", "fair_copy", "hazard", "persistence", "majority_mean": metrics} on
    `batches` (`horizon`: the steps in a second, see `evaluate`)."""
    kwargs = {
        "value_scale": value_scale,
        "weights": weights,
        "class_weights": class_weights,
        "horizon": horizon,
    }
    return {
        "model": evaluate(predict, batches, **kwargs),
        "fair_copy": evaluate(fair_copy(priors), batches, **kwargs),
        "hazard": evaluate(hazard(priors), batches, **kwargs),
        "persistence": evaluate(persistence(priors), batches, **kwargs),
        "majority_mean": evaluate(majority_mean(priors), batches, **kwargs),
    }
