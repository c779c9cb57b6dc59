"""The next-step objective: the output at step t is scored against the input at step t + 1.

- `active`: cross-entropy on every track of every real target step.
- `asset` and the continuous values: only where the target track is active (an inactive
  track's asset and values are placeholders, not something to predict).
- Padded steps contribute nothing. Each head's loss is a mean over the elements it scores,
  and the total is their weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from xmlai_assets.model.transformer import HEADS, MOVED, N_PARAMS
from xmlai_assets.timeline.schema import (
    ACTIVE,
    ASSET,
    CONTINUOUS_PARAMS,
    N_ASSET_CLASSES,
    VALUES,
)


@dataclass
class Targets:
    """The next-step targets of a batch, aligned with outputs[:, :-1]."""

    active: torch.Tensor  # long [B, T-1, 20]
    asset: torch.Tensor  # long [B, T-1, 20]
    values: torch.Tensor  # float [B, T-1, 20, 7], scaled units
    valid: torch.Tensor  # bool [B, T-1]: the target step is real
    on: torch.Tensor  # bool [B, T-1, 20]: the target track is active (and the step real)


def next_step_targets(sequences: torch.Tensor, masks: torch.Tensor) -> Targets:
    b, t, _ = sequences.shape
    tracks = sequences[:, 1:].reshape(b, t - 1, -1, N_PARAMS)
    valid = masks[:, 1:] & masks[:, :-1]
    active = tracks[..., ACTIVE].round().long()
    return Targets(
        active=active,
        asset=tracks[..., ASSET].round().long(),
        values=tracks[..., VALUES],
        valid=valid,
        on=(active == 1) & valid[..., None],
    )


def element_losses(
    outputs: Mapping[str, torch.Tensor],
    targets: Targets,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per head, (loss of each element [B, T-1, 20], its weight): weight 0 where the head
    scores nothing, the class weight (or 1) where it does."""
    class_weights = class_weights or {}
    valid_tracks = targets.valid[..., None].expand_as(targets.active)
    out = {
        "active": _cross_entropy(
            outputs["active"], targets.active, valid_tracks, class_weights.get("active")
        ),
        "asset": _cross_entropy(
            outputs["asset"], targets.asset, targets.on, class_weights.get("asset")
        ),
    }
    weight = targets.on.float()
    for i, param in enumerate(CONTINUOUS_PARAMS):
        out[param] = ((outputs[param][:, :-1].float() - targets.values[..., i]) ** 2, weight)
    return out


def _cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, where: torch.Tensor, weight: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits[:, :-1].float()
    classes = logits.shape[-1]
    # targets where nothing is scored may hold any value; keep them in range for cross_entropy
    safe = torch.where(where, target, torch.zeros_like(target)).clamp(0, classes - 1)
    ce = F.cross_entropy(logits.reshape(-1, classes), safe.reshape(-1), reduction="none")
    w = where.to(ce.dtype)
    if weight is not None:
        w = w * weight.to(ce.device, ce.dtype)[safe]
    return ce.reshape(target.shape), w


def head_losses(
    outputs: Mapping[str, torch.Tensor],
    targets: Targets,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Per head, the weighted mean loss over the elements it scores; 0 where it scores none."""
    return {
        head: (loss * w).sum() / w.sum().clamp(min=1e-12)
        for head, (loss, w) in element_losses(outputs, targets, class_weights).items()
    }


def total_loss(
    losses: Mapping[str, torch.Tensor], weights: Mapping[str, float] | None = None
) -> torch.Tensor:
    weights = weights or {}
    return sum(weights.get(head, 1.0) * losses[head] for head in HEADS)


def next_step_loss(
    outputs: Mapping[str, torch.Tensor],
    sequences: torch.Tensor,
    masks: torch.Tensor,
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(weighted total, per-head losses) of the model's outputs against the next steps."""
    losses = head_losses(outputs, next_step_targets(sequences, masks), class_weights)
    return total_loss(losses, weights), losses


def class_weights_from(sequences: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Inverse-frequency class weights of `active` (all tracks) and `asset` (active tracks),
    normalized to mean 1 over the classes seen; from the training split only."""
    tracks = sequences[masks].reshape(-1, sequences.shape[-1] // N_PARAMS, N_PARAMS)
    active = tracks[..., ACTIVE].round().long().clamp(0, 1)
    asset = tracks[..., ASSET].round().long().clamp(0, N_ASSET_CLASSES - 1)[active == 1]
    out = {}
    for name, values, classes in (("active", active, 2), ("asset", asset, 10)):
        counts = torch.bincount(values.reshape(-1), minlength=classes).double()
        weight = torch.where(counts > 0, counts.sum() / counts.clamp(min=1), 0.0)
        seen = weight > 0
        out[name] = (weight / weight[seen].mean()).float() if seen.any() else torch.ones(classes)
    return out


def training_loss(
    outputs: Mapping[str, torch.Tensor],
    sequences: torch.Tensor,
    masks: torch.Tensor,
    weights: Mapping[str, float] | None = None,
    class_weights: Mapping[str, torch.Tensor] | None = None,
    sum_over_ranks: Callable[[torch.Tensor], torch.Tensor] | None = None,
    present: bool = True,
) -> torch.Tensor:
    """What training minimizes: the next-step loss, except that a gated model (outputs `move`
    and `delta`) learns each continuous value as a gate, binary cross-entropy on whether the
    value moved from where it starts (`start` when the model gives it, else the current
    value), and a change, squared error where it moved; both where the target track is on.
    Its scored loss (`next_step_loss`) is that of the values it outputs.

    Every term is a weighted sum over the batch's elements divided by a count of them. When a
    batch is sharded over the ranks of a distributed run, `sum_over_ranks` sums the counts of
    all ranks, so each rank's loss is its share of the whole batch's loss: summed over the
    ranks, the loss and its gradient are those of the batch in one process. A rank whose
    share of a short last batch is empty passes a stand-in window with `present=False`: it
    counts for nothing."""
    terms = _loss_terms(outputs, sequences, masks, class_weights)
    if not present:
        terms = [(head, total * 0.0, count * 0.0, share) for head, total, count, share in terms]
    counts = torch.stack([count for _, _, count, _ in terms]).detach()
    if sum_over_ranks is not None:
        counts = sum_over_ranks(counts)
    losses: dict[str, torch.Tensor] = {}
    for i, (head, total, _, share) in enumerate(terms):
        term = total / counts[i].clamp(min=1e-12) / share
        losses[head] = losses[head] + term if head in losses else term
    return total_loss(losses, weights)


def _loss_terms(
    outputs: Mapping[str, torch.Tensor],
    sequences: torch.Tensor,
    masks: torch.Tensor,
    class_weights: Mapping[str, torch.Tensor] | None,
) -> list[tuple[str, torch.Tensor, torch.Tensor, float]]:
    """(head, weighted sum of its elements' losses, their count, the share of the head it
    divides by) per term."""
    targets = next_step_targets(sequences, masks)
    elements = element_losses(outputs, targets, class_weights)
    if "move" not in outputs:
        return [(head, (loss * w).sum(), w.sum(), 1) for head, (loss, w) in elements.items()]
    terms = []
    for head in ("active", "asset"):
        loss, w = elements[head]
        terms.append((head, (loss * w).sum(), w.sum(), 1))
    b, t, _ = sequences.shape
    before = sequences[:, :-1].reshape(b, t - 1, -1, N_PARAMS)  # the input step's tracks
    if "start" in outputs:  # where each value starts from: the gate decides for every on target
        change = targets.values - outputs["start"][:, :-1].float()
        moved = (change.abs() > MOVED).float()
        on = targets.on[..., None].expand_as(moved).float()
        gated = on
    else:  # from the current value: the gate decides for tracks on at both steps
        change = targets.values - before[..., VALUES]
        moved = (change.abs() > MOVED).float()
        on = targets.on[..., None].expand_as(moved).float()
        gated = on * (before[..., ACTIVE, None] > 0.5).float()
    gate = F.binary_cross_entropy_with_logits(
        outputs["move"][:, :-1].float(), moved, reduction="none"
    )
    step = (outputs["delta"][:, :-1].float() - change) ** 2
    for i, param in enumerate(CONTINUOUS_PARAMS):
        w_gate, w_step = gated[..., i], (on * torch.maximum(moved, 1.0 - gated))[..., i]
        # the seven gates share one head's weight, so on/off prediction is not starved
        terms.append((param, (gate[..., i] * w_gate).sum(), w_gate.sum(), len(CONTINUOUS_PARAMS)))
        # over every scored element, as the plain squared error: the rare moves do not outweigh
        # the other heads
        terms.append((param, (step[..., i] * w_step).sum(), on[..., i].sum(), 1))
    return terms
