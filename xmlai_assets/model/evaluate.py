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

Each metric is computed on all scored elements and again on change steps only (the target
differs from the step before), where copying is wrong by construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from xmlai_assets.model.data import Batch
from xmlai_assets.model.loss import Targets, element_losses, next_step_targets
from xmlai_assets.model.transformer import HEADS, MOVED, N_ASSETS, N_PARAMS
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

    @classmethod
    def from_training(cls, batches: Iterable[Batch], n_tracks: int = 20) -> Priors:
        same = {"active": [0.0, 0.0], "asset": [0.0, 0.0]}
        kept_by_state = torch.zeros(n_tracks, 2, dtype=torch.float64)
        seen_by_state = torch.zeros(n_tracks, 2, dtype=torch.float64)
        asset_kept = torch.zeros(n_tracks, dtype=torch.float64)
        asset_seen = torch.zeros(n_tracks, dtype=torch.float64)
        active_counts = torch.zeros(n_tracks, 2, dtype=torch.float64)
        asset_counts = torch.zeros(n_tracks, N_ASSETS, dtype=torch.float64)
        value_sum = torch.zeros(n_tracks, N_PARAMS - 2, dtype=torch.float64)
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
            value_sum += (real[..., VALUES].double() * on[..., None]).sum(0)
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
            cell = _hazard_cell(prev_active)[pairs]  # each pair's (track, state, held) cell
            flipped = (t.active != prev_active)[pairs].double()
            flips_by_held.index_add_(0, cell, flipped)
            seen_by_held.index_add_(0, cell, torch.ones_like(flipped))
        on_counts = asset_counts.sum(1, keepdim=True)
        return cls(
            stay={k: (s + 1.0) / (n + 2.0) for k, (s, n) in same.items()},
            active_freq=((active_counts + 1) / (active_counts + 1).sum(1, keepdim=True)).float(),
            asset_freq=((asset_counts + 1) / (asset_counts + 1).sum(1, keepdim=True)).float(),
            value_mean=(value_sum / on_counts.clamp(min=1)).float(),
            # add-one smoothing: a track never seen in a state gets 2/3 of staying there
            track_stay=((kept_by_state + 1.0) / (seen_by_state + 2.0)).float(),
            track_asset_stay=((asset_kept + 1.0) / (asset_seen + 2.0)).float(),
            hazard=_smoothed_hazard(
                flips_by_held.reshape(n_tracks, 2, N_HELD),
                seen_by_held.reshape(n_tracks, 2, N_HELD),
            ),
        )


# Buckets of how long a track has held its state, in steps (10 Hz: 0.1 s to 10 s and more):
# 1, 2, 3-4, 5-9, 10-19, 20-29, 30-49, 50-99, 100 and more.
HELD_EDGES = (2, 3, 5, 10, 20, 30, 50, 100)
N_HELD = len(HELD_EDGES) + 1
# A track's own flip counts weigh against the rate of all tracks as this many steps would.
HAZARD_PRIOR_STEPS = 10.0


def held_steps(active: torch.Tensor) -> torch.Tensor:
    """[B, T, 20] → how many steps each track has been in its state at each step, itself
    included, counting from the window's first step (the window is all a predictor sees)."""
    t = torch.arange(active.shape[1], device=active.device)[None, :, None]
    change = torch.ones_like(active, dtype=torch.bool)
    change[:, 1:] = active[:, 1:] != active[:, :-1]
    start = torch.where(change, t, torch.zeros_like(t)).cummax(dim=1).values
    return t - start + 1


def _held_bucket(active: torch.Tensor) -> torch.Tensor:
    edges = torch.tensor(HELD_EDGES, device=active.device)
    return torch.bucketize(held_steps(active), edges, right=True)


def _hazard_cell(active: torch.Tensor) -> torch.Tensor:
    """[B, T, 20] states (0, 1) → the flat index of each (track, state, held bucket) cell."""
    track = torch.arange(active.shape[-1], device=active.device)
    return (track * 2 + active) * N_HELD + _held_bucket(active)


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
        keep = priors.track_asset_stay.expand_as(asset)
        usual = priors.asset_freq.expand(*asset.shape, -1)  # [B, T, 20, 10]
        others = usual.scatter(-1, asset[..., None], 0.0)
        others = others / others.sum(-1, keepdim=True).clamp(min=1e-12)
        copied = others * (1 - keep)[..., None]
        copied = copied.scatter(-1, asset[..., None], keep[..., None])
        on = (active == 1)[..., None]
        out = {"active": probs.log(), "asset": torch.where(on, copied, usual).log()}
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
        cell = _hazard_cell(active)
        flip = priors.hazard.reshape(-1).to(cell.device)[cell]
        p_on = torch.where(active == 1, 1 - flip, flip)
        out["active"] = torch.stack([1 - p_on, p_on], -1).log()
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


class _Events:
    """The chance each scored track gives of flipping (turning on if off, off if on) at the next
    step, beside whether it did, gathered over batches."""

    def __init__(self) -> None:
        self.parts: list[tuple[torch.Tensor, ...]] = []

    def add(
        self,
        logits: torch.Tensor,
        current: torch.Tensor,
        target: torch.Tensor,
        scored: torch.Tensor,
    ) -> None:
        p_on = logits.float().softmax(-1)[..., ON]  # [B, T-1, 20]
        was_on = current.round().long() == 1
        flip = torch.where(was_on, 1 - p_on, p_on)
        tracks = torch.arange(p_on.shape[-1], device=p_on.device).expand_as(p_on)
        self.parts.append(
            tuple(
                x[scored].detach().cpu()
                for x in (flip, target.long() != was_on.long(), was_on, tracks)
            )
        )

    def metrics(self) -> dict[str, float]:
        from sklearn.metrics import average_precision_score, roc_auc_score

        if not self.parts:
            return {}
        columns = zip(*self.parts, strict=True)
        score, flipped, was_on, track = (torch.cat(x).numpy() for x in columns)
        live = set(track[was_on | flipped].tolist())  # tracks that are ever on
        out = {}
        for name, state in (("turn_on", False), ("turn_off", True)):
            ap, auroc = [], []
            for t in sorted(live):
                rows = (track == t) & (was_on == state)
                y = flipped[rows]
                if y.any() and not y.all():
                    ap.append(average_precision_score(y, score[rows]))
                    auroc.append(roc_auc_score(y, score[rows]))
            out[f"{name}_ap"] = float(sum(ap) / len(ap)) if ap else math.nan
            out[f"{name}_auroc"] = float(sum(auroc) / len(auroc)) if auroc else math.nan
        return out


def evaluate(
    predict: Predictor,
    batches: Iterable[Batch],
    *,
    value_scale: Mapping[str, float],
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Metrics of `predict` over `batches`, on all scored elements and on change steps.

    Keys: `loss_<head>` (the training loss of each head) and `loss` (their weighted sum);
    `active_acc`; `asset_acc` (on active targets); `<param>_mae` in original units
    (`value_scale[param]` original units per scaled unit), from the predictions, also split by
    what the track did: `<param>_mae_onset` (it came on), `_mae_hold` (it was on and kept the
    value), `_mae_move` (it was on and moved it); each also as `change_<key>`, over the
    elements whose target differs from the step before. And the events: `turn_on_ap`,
    `turn_on_auroc`, `turn_off_ap`, `turn_off_auroc`, how well the chance of a track turning on
    (off) at the next step ranks the steps where it does, averaged over the tracks that are
    ever on. NaN where nothing was scored.
    """
    sums = _Sums()
    events = _Events()
    for batch in batches:
        outputs = predict(batch)
        targets = next_step_targets(batch.sequences, batch.masks)
        prev = _tracks(batch.sequences[:, :-1])
        changed = {
            "active": targets.active != prev[..., ACTIVE].round().long(),
            "asset": targets.asset != prev[..., ASSET].round().long(),
        }
        for i, param in enumerate(CONTINUOUS_PARAMS):
            changed[param] = (targets.values[..., i] - prev[..., VALUES][..., i]).abs() > MOVED
        for head, (loss, weight) in _scored_once(batch, outputs, targets, class_weights):
            scored = weight > 0
            if head == "active":
                events.add(outputs["active"][:, :-1], prev[..., ACTIVE], targets.active, scored)
            sums.add(f"loss_{head}", loss, weight)
            sums.add(f"change_loss_{head}", loss, weight * changed[head])
            if head in ("active", "asset"):
                hit = outputs[head][:, :-1].argmax(-1) == getattr(targets, head)
                sums.add(f"{head}_acc", hit, scored)
                sums.add(f"change_{head}_acc", hit, scored & changed[head])
            else:
                i = CONTINUOUS_PARAMS.index(head)
                predicted = outputs[head][:, :-1].float()
                scale = float(value_scale.get(head, 1.0))
                error = ((predicted - targets.values[..., i]).abs() * scale).detach()
                sums.add(f"{head}_mae", error, scored)
                sums.add(f"change_{head}_mae", error, scored & changed[head])
                # by what the track did: came on, held its value, or moved it
                was_on = prev[..., ACTIVE].round() == 1
                sums.add(f"{head}_mae_onset", error, scored & ~was_on)
                sums.add(f"{head}_mae_hold", error, scored & was_on & ~changed[head])
                sums.add(f"{head}_mae_move", error, scored & was_on & changed[head])
    metrics = {key: sums.mean(key) for key in sorted(sums.n)} | events.metrics()
    for prefix in ("", "change_"):
        parts = [metrics[f"{prefix}loss_{h}"] for h in HEADS]
        metrics[f"{prefix}loss"] = _weighted_total(parts, weights)
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
) -> dict[str, dict[str, float]]:
    """{"model", "fair_copy", "hazard", "persistence", "majority_mean": metrics} on
    `batches`."""
    kwargs = {"value_scale": value_scale, "weights": weights, "class_weights": class_weights}
    return {
        "model": evaluate(predict, batches, **kwargs),
        "fair_copy": evaluate(fair_copy(priors), batches, **kwargs),
        "hazard": evaluate(hazard(priors), batches, **kwargs),
        "persistence": evaluate(persistence(priors), batches, **kwargs),
        "majority_mean": evaluate(majority_mean(priors), batches, **kwargs),
    }
