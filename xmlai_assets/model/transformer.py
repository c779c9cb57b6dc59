"""The multi-track transformer: the layout of 20 tracks at each step in, the next step out.

Per step, each track's `active` and `asset` enter one-hot (they are categories, never scaled
numbers) beside its 7 scaled continuous values; all 20 tracks are projected to `d_model`,
given a sinusoidal position, and read by a causal Transformer encoder. Per-track heads give
`active` logits (2), `asset` logits (10) and the 7 continuous values. The continuous heads
predict the change from the current step, so holding a value still is the easy default. With
the prior (`ModelConfig.prior`), every head corrects a baseline counted on the training split
instead of starting from nothing.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from xmlai_assets.model.config import HEADS, N_ACTIVE, N_ASSETS, N_PARAMS, ModelConfig
from xmlai_assets.timeline.schema import ACTIVE, ASSET, CONTINUOUS_PARAMS, VALUES

__all__ = ["HEADS", "N_ACTIVE", "N_ASSETS", "N_PARAMS", "ModelConfig", "MultiTrackTransformer"]


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """Bool [T, T]: True where step i may not look at step j (j > i)."""
    return torch.triu(torch.ones(length, length, dtype=torch.bool, device=device), diagonal=1)


MOVED = 1e-6  # a change of a scaled value above this is a move


def last_change(values: torch.Tensor) -> torch.Tensor:
    """[B, T, ...] → each step's change from the step before (0 at the first step)."""
    change = torch.zeros_like(values)
    change[:, 1:] = values[:, 1:] - values[:, :-1]
    return change


def one_hot(index: torch.Tensor, classes: int, dtype: torch.dtype) -> torch.Tensor:
    """`F.one_hot(index, classes).to(dtype)` for indices in range, without its range check,
    which reads the indices back to the host and so waits for a GPU at every step."""
    return (index[..., None] == torch.arange(classes, device=index.device)).to(dtype)


# Buckets of how long a track has held its state, in steps (10 Hz: 0.1 s to 10 s and more):
# 1, 2, 3-4, 5-9, 10-19, 20-29, 30-49, 50-99, 100 and more.
HELD_EDGES = (2, 3, 5, 10, 20, 30, 50, 100)
N_HELD = len(HELD_EDGES) + 1


def held_steps(active: torch.Tensor) -> torch.Tensor:
    """[B, T, 20] → how many steps each track has been in its state at each step, itself
    included, counting from the window's first step (the window is all a predictor sees)."""
    t = torch.arange(active.shape[1], device=active.device)[None, :, None]
    change = torch.ones_like(active, dtype=torch.bool)
    change[:, 1:] = active[:, 1:] != active[:, :-1]
    start = torch.where(change, t, torch.zeros_like(t)).cummax(dim=1).values
    return t - start + 1


def held_bucket(active: torch.Tensor) -> torch.Tensor:
    edges = torch.tensor(HELD_EDGES, device=active.device)
    return torch.bucketize(held_steps(active), edges, right=True)


def hazard_cell(active: torch.Tensor) -> torch.Tensor:
    """[B, T, 20] states (0, 1) → the flat index of each (track, state, held bucket) cell."""
    track = torch.arange(active.shape[-1], device=active.device)
    return (track * 2 + active) * N_HELD + held_bucket(active)


def hazard_log_chances(
    active: torch.Tensor, flip_chance: torch.Tensor, floor: float = 0.0
) -> torch.Tensor:
    """[B, T, 20] states (0, 1) and a [20, 2, N_HELD] table of the chance of flipping by track,
    state and time held → log-chances [B, T, 20, 2] of off and on at the next step, none
    below `floor`."""
    flip = flip_chance.reshape(-1)[hazard_cell(active)]
    p_on = torch.where(active == 1, 1 - flip, flip)
    return torch.stack([1 - p_on, p_on], -1).clamp_min(floor).log()


def copied_asset_log_chances(
    active: torch.Tensor,
    asset: torch.Tensor,
    stay: torch.Tensor,
    usual: torch.Tensor,
    floor: float = 0.0,
) -> torch.Tensor:
    """The fair copy's asset: a track on keeps its asset with its chance `stay` [20], or takes
    another in proportion to its usual ones `usual` [20, classes]; a track off takes its usual
    ones. Log-chances [B, T, 20, classes], none below `floor`."""
    usual = usual.expand(*asset.shape, -1)
    others = usual.scatter(-1, asset[..., None], 0.0)
    others = others / others.sum(-1, keepdim=True).clamp(min=1e-12)
    keep = stay.expand_as(asset)
    copied = (others * (1 - keep)[..., None]).scatter(-1, asset[..., None], keep[..., None])
    return torch.where((active == 1)[..., None], copied, usual).clamp_min(floor).log()


# The least chance the model's starting point gives anything: a correction of a few units
# overturns it, where a chance of 1e-12 would need a large one.
PROBABILITY_FLOOR = 1e-6


class SinusoidalPosition(nn.Module):
    def __init__(self, d_model: int):
        super().__init__()
        self.d_model = d_model

    def forward(self, length: int, device: torch.device) -> torch.Tensor:
        position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
        i = torch.arange(0, self.d_model, 2, device=device, dtype=torch.float32)
        angle = position * torch.exp(-math.log(10000.0) * i / self.d_model)
        pe = torch.zeros(length, self.d_model, device=device)
        pe[:, 0::2] = torch.sin(angle)
        pe[:, 1::2] = torch.cos(angle[:, : self.d_model // 2])
        return pe


class MultiTrackTransformer(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        self.n_continuous = N_PARAMS - 2
        self.gated = config.value_head == "gated"
        per_track = N_ACTIVE + config.n_assets + self.n_continuous
        if self.gated:  # the last step's change of each value, and whether any moved
            per_track += self.n_continuous + 1
        self.input = nn.Linear(config.n_tracks * per_track, config.d_model)
        self.prior = config.prior == "baselines"
        if self.prior:  # set from the training split by `set_prior` before training
            n = config.n_tracks
            self.register_buffer("flip_chance", torch.full((n, N_ACTIVE, N_HELD), 0.5))
            self.register_buffer("asset_stay", torch.full((n,), 0.5))
            self.register_buffer(
                "asset_usual", torch.full((n, config.n_assets), 1 / config.n_assets)
            )
            self.register_buffer("value_usual", torch.zeros(n, self.n_continuous))
            self.register_buffer("move_chance", torch.full((n, N_ACTIVE, self.n_continuous), 0.5))
        self.position = SinusoidalPosition(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        # Separately built layers: nn.TransformerEncoder would deep-copy one layer into all.
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                config.d_model,
                config.n_heads,
                config.d_ff,
                config.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.d_model)
        self.active_head = nn.Linear(config.d_model, config.n_tracks * N_ACTIVE)
        self.asset_head = nn.Linear(config.d_model, config.n_tracks * config.n_assets)
        self.value_head = nn.Linear(config.d_model, config.n_tracks * self.n_continuous)
        heads = [self.active_head, self.asset_head, self.value_head]
        if self.gated:
            self.move_head = nn.Linear(config.d_model, config.n_tracks * self.n_continuous)
            heads.append(self.move_head)
        for head in heads:
            # near-uniform class probabilities at the start: loss ln 2 and ln 10
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)

    def set_prior(
        self,
        flip_chance: torch.Tensor,
        asset_stay: torch.Tensor,
        asset_usual: torch.Tensor,
        value_usual: torch.Tensor,
        move_chance: torch.Tensor,
    ) -> None:
        """What the heads start from (`Priors` of the training split): the hazard table's
        chance of flipping by track, state and time held, the fair copy's asset chances, each
        track's mean values when on (scaled), where a track that is off comes on, and the
        chance each value moves from where it starts, by track and state."""
        with torch.no_grad():
            self.move_chance.copy_(move_chance)
            self.flip_chance.copy_(flip_chance)
            self.asset_stay.copy_(asset_stay)
            self.asset_usual.copy_(asset_usual)
            self.value_usual.copy_(value_usual)

    def encode_inputs(self, sequences: torch.Tensor) -> torch.Tensor:
        """[B, T, 180] → [B, T, 20 * 19]: one-hot active and asset, continuous values as is."""
        b, t, _ = sequences.shape
        tracks = sequences.reshape(b, t, self.config.n_tracks, N_PARAMS)
        active = tracks[..., ACTIVE].round().long().clamp(0, N_ACTIVE - 1)
        asset = tracks[..., ASSET].round().long().clamp(0, self.config.n_assets - 1)
        parts = [
            one_hot(active, N_ACTIVE, sequences.dtype),
            one_hot(asset, self.config.n_assets, sequences.dtype),
            tracks[..., VALUES],
        ]
        if self.gated:
            change = last_change(tracks[..., VALUES])
            parts += [change, (change.abs() > MOVED).any(-1, keepdim=True).to(sequences.dtype)]
        return torch.cat(parts, dim=-1).reshape(b, t, -1)

    def forward(
        self, sequences: torch.Tensor, masks: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Predictions for the step after each input step.

        `sequences` [B, T, 180]; `masks` [B, T] bool with True on real steps (None: all real).
        Returns per head: `active` [B, T, 20, 2] and `asset` [B, T, 20, 10] logits, and each
        continuous parameter [B, T, 20] in scaled units; a gated model also its `move` logits
        and its `delta` [B, T, 20, 7] (the change a move makes). Output t depends on inputs
        0..t only.
        """
        b, t, _ = sequences.shape
        x = self.input(self.encode_inputs(sequences))
        x = self.dropout(x + self.position(t, sequences.device))
        attn_mask = causal_mask(t, sequences.device)
        padding = None if masks is None else ~masks
        for layer in self.layers:
            x = layer(x, src_mask=attn_mask, src_key_padding_mask=padding, is_causal=True)
        x = self.norm(x)
        n = self.config.n_tracks
        tracks = sequences.reshape(b, t, n, N_PARAMS)
        current = tracks[..., VALUES]
        delta = self.value_head(x).reshape(b, t, n, self.n_continuous)
        out = {
            "active": self.active_head(x).reshape(b, t, n, N_ACTIVE),
            "asset": self.asset_head(x).reshape(b, t, n, self.config.n_assets),
        }
        on = tracks[..., ACTIVE, None] > 0.5
        if self.prior:
            # the heads correct the baselines: at the start (heads near zero) the model is the
            # hazard table on on/off and the fair copy on assets and on values, a track that
            # is off coming on at its usual values
            active = tracks[..., ACTIVE].round().long().clamp(0, N_ACTIVE - 1)
            asset = tracks[..., ASSET].round().long().clamp(0, self.config.n_assets - 1)
            out["active"] = out["active"] + hazard_log_chances(
                active, self.flip_chance, PROBABILITY_FLOOR
            )
            out["asset"] = out["asset"] + copied_asset_log_chances(
                active, asset, self.asset_stay, self.asset_usual, PROBABILITY_FLOOR
            )
            current = torch.where(on, current, self.value_usual.to(current.dtype))
        if self.gated:
            # move logits [B, T, 20, 7]: where the gate says hold, a value is `start` exactly:
            # the current one of a track on screen, or (with the prior) the usual one of a
            # track that comes on. Without the prior a track off screen has no value to hold:
            # its next one, should it come on, is the predicted change from the placeholder.
            out["move"] = self.move_head(x).reshape(b, t, n, self.n_continuous)
            out["delta"] = delta
            if self.prior:  # the gate corrects each track's chance of moving, by state
                chance = self.move_chance.reshape(n * N_ACTIVE, -1)[
                    torch.arange(n, device=active.device) * N_ACTIVE + active
                ].clamp(PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
                out["move"] = out["move"] + torch.logit(chance).to(out["move"].dtype)
            move = out["move"] > 0
            if self.prior:
                out["start"] = current
            else:
                move = move | ~on
            delta = torch.where(move, delta, torch.zeros_like(delta))
        values = current + delta
        out.update({param: values[..., i] for i, param in enumerate(CONTINUOUS_PARAMS)})
        return out


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
