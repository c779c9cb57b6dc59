"""Where a new clip should go: a vocabulary of the placements a team uses, and a model that
ranks them for a clip dropped on a track, given the layout of the other tracks at that moment.

Pure numpy, no torch.

- An *onset* is a row where a track comes on (it was off at the row before, or the timeline
  starts there). Its *placement* is the track's seven values there: scale, x, y and the four
  crops, in the master CSV's units.
- The *vocabulary* covers the training split's onset placements greedily: the placement that
  would count as a hit (within the tolerance) for the most onsets becomes the first group's
  representative, those onsets its members; then the same among the onsets left, until every
  onset is covered. Each representative is a placement the team used, chosen to be right as
  often as one suggestion can be. Placements are few and sharp (a face cam in one of the
  corners at a few sizes), so a handful of groups cover a track.
- The *model* scores a group for a clip on track `t` of asset class `a` as
  `P(group | t, a) * prod_j P(what track j shows | group) ** w[t, j]`: the first counted on
  the training onsets, backed off to `P(group | t)` and `P(group)` where `(t, a)` is rare;
  the second over the other tracks `j`, each showing one of the groups, another placement or
  nothing (naive Bayes, add-one smoothed). The weights `w` say how much track `j` counts for
  a clip on `t`; they are chosen on the validation onsets.
- A suggestion is a group's representative, *refined* where the group's values follow
  another track's (`Follow`: a side-by-side partner's crop copies its partner's), and each
  suggestion is more than the tolerance away from those before it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xmlai_assets.features.frames import TrackFrames
from xmlai_assets.timeline.schema import (
    ACTIVE,
    ASSET,
    CONTINUOUS_PARAMS,
    N_TRACKS,
    TRACK_PARAMS,
    VALUES,
)

PLACEMENT_PARAMS = CONTINUOUS_PARAMS  # scale, x, y, crop_l, crop_r, crop_t, crop_b
VALUE_INDEX = np.arange(len(TRACK_PARAMS))[VALUES]  # each placement parameter's index in a track


@dataclass(frozen=True)
class Tolerance:
    """How far a placement may be from another and still count as the same: the centre in
    frame widths and heights, the scale and the crops in percentage points."""

    centre: float = 0.03
    scale: float = 5.0
    crop: float = 3.0

    def limits(self) -> np.ndarray:
        """Per placement parameter, in `PLACEMENT_PARAMS` order."""
        return np.array([self.scale, self.centre, self.centre, *[self.crop] * 4])


def distance(a: np.ndarray, b: np.ndarray, tolerance: Tolerance) -> np.ndarray:
    """The largest difference of any parameter in units of its tolerance: <= 1 is a hit."""
    return np.max(np.abs(a - b) / tolerance.limits(), axis=-1)


def valid_layout(placement: np.ndarray) -> np.ndarray:
    """Whether each placement is one an editor could use: its centre inside the frame, a
    positive scale, crops within 0..100 that leave something of each axis."""
    scale, x, y, left, right, top, bottom = np.moveaxis(np.asarray(placement), -1, 0)
    crops = np.stack([left, right, top, bottom])
    return (
        (scale > 0)
        & (np.abs(x) <= 0.5)
        & (np.abs(y) <= 0.5)
        & np.all((crops >= 0) & (crops <= 100), axis=0)
        & (left + right < 100)
        & (top + bottom < 100)
    )


@dataclass
class Onsets:
    """The clip onsets of a split: where each track comes on, with what, and around what."""

    video: np.ndarray  # int [N]: the video's index in the split
    row: np.ndarray  # int [N]: the row in the split's frames
    track: np.ndarray  # int [N]: 0..19
    asset: np.ndarray  # int [N]: the clip's asset class
    placement: np.ndarray  # float [N, 7]
    layout: np.ndarray  # float [N, 20, 9]: every track at that row (the clip's own included)

    def __len__(self) -> int:
        return len(self.track)


def find_onsets(frames: TrackFrames) -> Onsets:
    """Every row where a track comes on, in row order (then track order)."""
    active = frames.values[..., ACTIVE] > 0.5  # [rows, 20]
    before = np.zeros_like(active)
    before[1:] = active[:-1]
    before[frames.offsets[frames.lengths > 0]] = False  # a video's first row follows nothing
    rows, tracks = np.nonzero(active & ~before)
    video = np.searchsorted(frames.offsets, rows, side="right") - 1
    values = frames.values[rows, tracks]
    return Onsets(
        video=video.astype(np.int64),
        row=rows.astype(np.int64),
        track=tracks.astype(np.int64),
        asset=np.rint(values[:, ASSET]).astype(np.int64),
        placement=values[:, VALUES].astype(np.float64),
        layout=frames.values[rows].astype(np.float64),
    )


MAX_DISTINCT = 4000  # distinct placements the vocabulary is built from, the most frequent


@dataclass
class Vocabulary:
    """The placements a team uses: a representative and the count of each group."""

    representatives: np.ndarray  # [K, 7]
    counts: np.ndarray  # [K]
    tolerance: Tolerance

    @classmethod
    def fit(cls, placements: np.ndarray, tolerance: Tolerance = Tolerance()) -> Vocabulary:
        distinct, counts = np.unique(np.round(placements, 6), axis=0, return_counts=True)
        # the most frequent distinct placements only, so that memory and time stay bounded
        # (placements are few and sharp; the rest get no group and count as unknown)
        keep = np.sort(np.argsort(-counts, kind="stable")[:MAX_DISTINCT])
        distinct, counts = distinct[keep], counts[keep]
        # covers[i, j]: a suggestion of placement i is a hit for placement j
        covers = np.zeros((len(distinct), len(distinct)), dtype=bool)
        for start in range(0, len(distinct), 256):
            rows = distinct[start : start + 256, None]
            covers[start : start + 256] = distance(rows, distinct[None], tolerance) <= 1.0
        left = counts.astype(np.float64)
        reps: list[np.ndarray] = []
        sizes: list[int] = []
        while left.any():
            # the placement that would be a hit for the most onsets not yet covered; ties to
            # the first in the placements' own order, so a refit gives the same
            gain = covers @ left
            best = int(np.argmax(gain))
            reps.append(distinct[best])
            sizes.append(int(gain[best]))
            left[covers[best]] = 0.0
        shape = (len(reps), len(PLACEMENT_PARAMS))
        return cls(np.array(reps).reshape(shape), np.array(sizes, dtype=np.int64), tolerance)

    def __len__(self) -> int:
        return len(self.counts)

    def assign(self, placements: np.ndarray) -> np.ndarray:
        """The group each placement belongs to (the nearest representative within the
        tolerance), or -1 for none."""
        placements = np.asarray(placements, dtype=np.float64)
        flat = placements.reshape(-1, placements.shape[-1])
        out = np.full(len(flat), -1, dtype=np.int64)
        for start in range(0, len(flat) if len(self) else 0, 4096):  # bounded memory
            d = distance(flat[start : start + 4096, None], self.representatives, self.tolerance)
            nearest = np.argmin(d, axis=-1)
            within = d[np.arange(len(d)), nearest] <= 1.0
            out[start : start + 4096] = np.where(within, nearest, -1)
        return out.reshape(placements.shape[:-1])

    def as_dict(self) -> dict:
        return {
            "params": list(PLACEMENT_PARAMS),
            "tolerance": vars(self.tolerance),
            "representatives": self.representatives.tolist(),
            "counts": self.counts.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> Vocabulary:
        reps = np.array(data["representatives"], dtype=np.float64)
        return cls(
            reps.reshape(len(reps), len(PLACEMENT_PARAMS)),
            np.array(data["counts"], dtype=np.int64),
            Tolerance(**data["tolerance"]),
        )


# the groups told apart in what another track shows: the first ones, which cover the most
# onsets; a placement of a later group counts as another placement. It bounds the model's
# counts of the context at [K, 20, CONTEXT_GROUPS + 2] however many groups there are.
CONTEXT_GROUPS = 254


def context_size(vocabulary: Vocabulary) -> int:
    """M: how many groups a context symbol tells apart."""
    return min(len(vocabulary), CONTEXT_GROUPS)


def context_symbols(layout: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """What each track shows in `layout` [..., 20, 9]: its group where it is one of the
    first M (`context_size`), M for another placement, M + 1 for nothing."""
    m = context_size(vocabulary)
    active = layout[..., ACTIVE] > 0.5
    symbols = np.full(active.shape, m + 1, dtype=np.int64)
    groups = vocabulary.assign(layout[active][:, VALUES])  # most tracks are off: skip them
    symbols[active] = np.where((groups >= 0) & (groups < m), groups, m)
    return symbols


@dataclass(frozen=True)
class Follow:
    """A refinement of a group's values: for clips of `group` on `track`, parameter `param`
    (an index of `PLACEMENT_PARAMS`) is `sign * (the same parameter of track other) + offset`
    whenever `other` is on screen. A side-by-side partner's crop copies its partner's and its
    centre mirrors it; a group's representative alone can only be near them."""

    track: int
    group: int
    param: int
    other: int
    sign: float
    offset: float


FOLLOW_MIN = 5  # training onsets of a (track, group) showing the followed track, for a rule
FOLLOW_GAIN = 0.5  # a rule's training error at most this share of the representative's


def fit_follows(onsets: Onsets, vocabulary: Vocabulary, held: Onsets | None = None) -> list[Follow]:
    """The refinements of `onsets` (the training split's): for each (track, group) with
    enough onsets and each parameter, the other track whose same parameter, copied or
    mirrored and offset by the median difference, is closest to the onsets' values, where it
    at least halves the mean absolute error of the representative and of the best constant
    (a track whose value never changes tells nothing). A rule is kept only where it
    is no worse than the representative on the `held` onsets (the validation split's) of
    that track and group; where they have none, on the training evidence alone."""
    group = vocabulary.assign(onsets.placement)
    cells = np.unique(np.stack([onsets.track, group], 1)[group >= 0], axis=0)
    held_group = vocabulary.assign(held.placement) if held is not None else None
    follows: list[Follow] = []
    for t, g in cells.tolist():
        members = np.flatnonzero((onsets.track == t) & (group == g))
        if len(members) < FOLLOW_MIN:
            continue
        on = onsets.layout[members, :, ACTIVE] > 0.5  # [n, 20]
        on[:, t] = False  # a clip does not follow its own track
        support = on.sum(0) >= FOLLOW_MIN
        if not support.any():
            continue
        for p in range(len(PLACEMENT_PARAMS)):
            rule = _best_follow(onsets, members, on, support, t, g, p, vocabulary)
            if rule is not None and _holds(rule, held, held_group, vocabulary):
                follows.append(rule)
    return follows


def _best_follow(onsets, members, on, support, t, g, p, vocabulary) -> Follow | None:
    value = onsets.placement[members, p]
    on = on[:, support]
    others = onsets.layout[members][:, support, VALUE_INDEX[p]]  # [n, tracks followed]
    # the error of the best constant (the members' median), so that a track whose value
    # never changes is not mistaken for one the clip follows
    alone = np.where(on, value[:, None], np.nan)
    constant = np.nanmean(np.abs(alone - np.nanmedian(alone, axis=0)), axis=0)
    represented = np.nanmean(np.abs(alone - vocabulary.representatives[g, p]), axis=0)
    base_error = np.minimum(constant, represented)
    best: tuple[float, Follow] | None = None
    for sign in (1.0, -1.0):
        diff = np.where(on, value[:, None] - sign * others, np.nan)
        offset = np.nanmedian(diff, axis=0)
        error = np.nanmean(np.abs(diff - offset), axis=0)
        for k, j in enumerate(np.flatnonzero(support).tolist()):
            helps = base_error[k] > 0 and error[k] <= FOLLOW_GAIN * base_error[k]
            if helps and (best is None or error[k] < best[0]):
                best = (float(error[k]), Follow(t, g, p, j, sign, round(float(offset[k]), 6)))
    return best[1] if best is not None else None


def _holds(rule: Follow, held: Onsets | None, held_group, vocabulary: Vocabulary) -> bool:
    if held is None:
        return True
    mine = (held.track == rule.track) & (held_group == rule.group)
    mine &= held.layout[:, rule.other, ACTIVE] > 0.5
    if not mine.any():
        return True
    value = held.placement[mine, rule.param]
    followed = rule.sign * held.layout[mine, rule.other, VALUE_INDEX[rule.param]] + rule.offset
    represented = vocabulary.representatives[rule.group, rule.param]
    return bool(np.mean(np.abs(value - followed)) <= np.mean(np.abs(value - represented)))


N_ASSETS = 10
# a weight of its own for one other track must raise the validation onsets' log-likelihood
# by this many nats in all (Akaike's price of a parameter), so that a few onsets cannot
# tune the weights to their noise
PER_WEIGHT = 1.0
SPARE = 4  # groups ranked per suggestion asked for, so that duplicates can be skipped
BACKOFF = 2.0  # a (track, asset) cell's counts weigh against its track's as this many onsets
CONTEXT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
UNKNOWN_LOG_PROB = math.log(1e-6)  # a placement in no group: as unlikely as a model says


@dataclass
class PlacementModel:
    """Counts of the training onsets: groups by track and asset class, and what each other
    track shows given the group."""

    vocabulary: Vocabulary
    by_track_asset: np.ndarray  # [20, 10, K]
    seen_with: np.ndarray  # [K, 20, M + 2]: group, other track, what it shows
    # how much each other track counts for a clip on a track: [clip's track, other track]
    # (0: not at all; 1: naive Bayes as is), chosen on the validation onsets by `tune`
    context_weight: np.ndarray = field(default_factory=lambda: np.ones((N_TRACKS, N_TRACKS)))
    follows: list[Follow] = field(default_factory=list)  # the refinements, `fit_follows`

    @classmethod
    def fit(cls, onsets: Onsets, vocabulary: Vocabulary) -> PlacementModel:
        k = len(vocabulary)
        group = vocabulary.assign(onsets.placement)
        known = group >= 0  # all but the rarest placements, beyond the vocabulary's bound
        track, asset, group = onsets.track[known], onsets.asset[known], group[known]
        by_track_asset = np.zeros((N_TRACKS, N_ASSETS, k))
        np.add.at(by_track_asset, (track, asset.clip(0, N_ASSETS - 1), group), 1)
        seen_with = np.zeros((k, N_TRACKS, context_size(vocabulary) + 2))
        symbols = context_symbols(onsets.layout[known], vocabulary)  # [N, 20]
        for j in range(N_TRACKS):
            other = track != j  # the clip's own track is not its context
            np.add.at(seen_with, (group[other], j, symbols[other, j]), 1)
        return cls(vocabulary, by_track_asset, seen_with)

    def log_prior(self, track: np.ndarray, asset: np.ndarray) -> np.ndarray:
        """[N, K] log P(group | track, asset class), backed off to the track and to all."""
        k = len(self.vocabulary)
        everything = self.by_track_asset.sum((0, 1))
        overall = (everything + 1.0) / (everything.sum() + k)
        per_track = self.by_track_asset.sum(1)  # [20, K]
        p_track = (per_track + BACKOFF * overall) / (per_track.sum(-1, keepdims=True) + BACKOFF)
        cell = self.by_track_asset[track, asset.clip(0, N_ASSETS - 1)]  # [N, K]
        return np.log((cell + BACKOFF * p_track[track]) / (cell.sum(-1, keepdims=True) + BACKOFF))

    def context_terms(self, track: np.ndarray, layout: np.ndarray):
        """For each other track j, [N, K] log P(what j shows in `layout` | group): zero where
        j is the clip's own track or a track never on screen in the training onsets."""
        m = context_size(self.vocabulary)
        symbols = context_symbols(layout, self.vocabulary)  # [N, 20]
        likely = np.log(
            (self.seen_with + 1.0) / (self.seen_with.sum(-1, keepdims=True) + m + 2)
        )  # [K, 20, M + 2]
        shown = self.seen_with[:, :, : m + 1].sum((0, 2)) > 0  # [20]
        for j in range(N_TRACKS):
            speaks = (track != j) & shown[j]
            yield j, np.where(speaks[:, None], likely[:, j, symbols[:, j]].T, 0.0)

    def log_probs(self, track: np.ndarray, asset: np.ndarray, layout: np.ndarray) -> np.ndarray:
        """[N, K] log-probabilities of each group for clips on `track` [N] of class `asset`
        [N] among the other tracks of `layout` [N, 20, 9] (the clip's own track is ignored;
        an empty track counts as much as one on screen: that a partner is missing tells)."""
        score = self.log_prior(track, asset)
        for j, term in self.context_terms(track, layout):
            score += self.context_weight[track, j][:, None] * term
        return score - np.logaddexp.reduce(score, axis=-1, keepdims=True)

    def tune(self, onsets: Onsets, weights=CONTEXT_WEIGHTS, rounds: int = 2) -> dict:
        """Set `context_weight` from `weights` so that the onsets of `onsets` (the validation
        split's) are most likely: for each track with onsets, first the one weight best for
        all other tracks, then each other track's own in turn (`rounds` passes); a track
        without onsets takes the weight best over all of them. Returns each shared weight's
        mean log-likelihood over all the onsets."""
        truth = self.vocabulary.assign(onsets.placement)

        def likelihood(score: np.ndarray, rows: np.ndarray) -> np.ndarray:
            log_p = score - np.logaddexp.reduce(score, axis=-1, keepdims=True)
            return log_prob_of(log_p, truth[rows])

        prior = self.log_prior(onsets.track, onsets.asset)
        context = np.zeros_like(prior)  # every other track at weight 1
        for _, term in self.context_terms(onsets.track, onsets.layout):
            context += term
        everyone = np.arange(len(onsets))
        each = np.array([likelihood(prior + w * context, everyone) for w in weights])
        overall = each.mean(1)
        chosen = np.full((N_TRACKS, N_TRACKS), float(weights[int(np.argmax(overall))]))
        for t in np.unique(onsets.track).tolist():
            rows = np.flatnonzero(onsets.track == t)
            shared = float(weights[int(np.argmax(each[:, rows].mean(1)))])
            w = np.full(N_TRACKS, shared)
            score = prior[rows] + shared * context[rows]
            terms = {  # the other tracks that say something of these onsets
                j: term
                for j, term in self.context_terms(onsets.track[rows], onsets.layout[rows])
                if term.any()
            }
            best = likelihood(score, rows).mean()
            for _ in range(rounds):
                for j, term in terms.items():
                    without = score - w[j] * term
                    for value in weights:
                        trial = likelihood(without + value * term, rows).mean()
                        if trial > best + PER_WEIGHT / len(rows):
                            best, w[j] = trial, float(value)
                    score = without + w[j] * term
            chosen[t] = w
        self.context_weight = chosen
        return {float(w): float(m) for w, m in zip(weights, overall, strict=True)}

    def placements(self, groups: np.ndarray, track: np.ndarray, layout: np.ndarray) -> np.ndarray:
        """[N, top, 7] the placements suggested for groups [N, top] of clips on `track` [N]
        among `layout` [N, 20, 9]: each group's representative, refined where a rule of
        `follows` applies (a refined placement that is not a valid layout is not used)."""
        represented = self.vocabulary.representatives[groups]
        out = represented.copy()
        for rule in self.follows:
            shown = layout[:, rule.other, ACTIVE] > 0.5
            applies = (groups == rule.group) & ((track == rule.track) & shown)[:, None]
            value = rule.sign * layout[:, rule.other, VALUE_INDEX[rule.param]] + rule.offset
            out[..., rule.param] = np.where(applies, value[:, None], out[..., rule.param])
        return np.where(valid_layout(out)[..., None], out, represented)

    def suggestions(
        self, log_probs: np.ndarray, track: np.ndarray, layout: np.ndarray, top: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The `top` suggestions for each clip, from its groups' log-probabilities [N, K]:
        the likeliest groups' placements (refined), skipping one within the tolerance of a
        suggestion before it (a refinement can bring two groups to one placement). Returns
        groups [N, top], placements [N, top, 7] and how many are distinct [N]; where fewer
        than `top` are, the last is repeated."""
        tolerance = self.vocabulary.tolerance
        order = np.argsort(-log_probs, axis=-1, kind="stable")[:, : SPARE * top]
        placed = self.placements(order, track, layout)  # [N, C, 7]
        rows = np.arange(len(order))
        groups = np.repeat(order[:, :1], top, 1)
        chosen = np.repeat(placed[:, :1], top, 1)
        count = np.zeros(len(order), dtype=np.int64)
        for c in range(order.shape[1]):
            seen = distance(chosen, placed[:, c, None], tolerance) <= 1.0  # [N, top]
            take = ~(seen & (np.arange(top) < count[:, None])).any(-1) & (count < top)
            groups[take, count[take]] = order[take, c]
            chosen[take, count[take]] = placed[take, c]
            count += take
            if (count == top).all():
                break
        last = np.maximum(count - 1, 0)
        after = np.arange(top) >= count[:, None]  # repeat the last distinct one
        groups = np.where(after, groups[rows, last][:, None], groups)
        chosen = np.where(after[..., None], chosen[rows, last][:, None], chosen)
        return groups, chosen, count

    def to_json(self) -> bytes:
        body = {
            "vocabulary": self.vocabulary.as_dict(),
            "by_track_asset": self.by_track_asset.tolist(),
            "seen_with": _sparse(self.seen_with),
            "context_weight": self.context_weight.tolist(),
            "follows": [vars(rule) for rule in self.follows],
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PlacementModel:
        body = json.loads(data)
        vocabulary = Vocabulary.from_dict(body["vocabulary"])
        return cls(
            vocabulary,
            np.array(body["by_track_asset"], dtype=np.float64),
            _seen_with(body["seen_with"], context_size(vocabulary)),
            _pairwise(np.array(body["context_weight"], dtype=np.float64)),
            [Follow(**rule) for rule in body.get("follows", [])],
        )


def _sparse(counts: np.ndarray) -> dict:
    """Counts as their shape and nonzero cells (most are zero: each training onset adds one
    count per other track), so that the file grows with the onsets, not with K squared."""
    flat = counts.ravel()
    cells = np.flatnonzero(flat)
    return {"shape": list(counts.shape), "cells": cells.tolist(), "counts": flat[cells].tolist()}


def _seen_with(stored, m: int) -> np.ndarray:
    """The context counts from a model file: sparse, or dense as earlier versions wrote them
    with a column per group (those beyond the first M fold into "another placement")."""
    if isinstance(stored, dict):
        counts = np.zeros(int(np.prod(stored["shape"])))
        counts[np.array(stored["cells"], dtype=np.int64)] = stored["counts"]
        return counts.reshape(stored["shape"])
    dense = np.array(stored, dtype=np.float64)  # [K, 20, K + 2]
    k = dense.shape[0]
    folded = np.zeros((k, N_TRACKS, m + 2))
    folded[..., :m] = dense[..., :m]
    folded[..., m] = dense[..., m : k + 1].sum(-1)
    folded[..., m + 1] = dense[..., k + 1]
    return folded


def _pairwise(weight: np.ndarray) -> np.ndarray:
    """A context weight per (clip track, other track); a model written with one weight per
    clip track gives it to every other track."""
    if weight.ndim == 1:
        return np.repeat(weight[:, None], N_TRACKS, 1)
    return weight


@dataclass
class Ranked:
    """A predictor's suggestions for each onset: candidate placements best first, and the
    log-probability it gives the true placement's group (NaN where it gives none)."""

    candidates: np.ndarray  # [N, top, 7]
    true_log_prob: np.ndarray  # [N]


def rank_groups(log_probs: np.ndarray, vocabulary: Vocabulary, truth: np.ndarray, top: int):
    """`Ranked` from per-group log-probabilities [N, K]: the likeliest groups'
    representatives."""
    order = np.argsort(-log_probs, axis=-1, kind="stable")[:, :top]
    return Ranked(
        vocabulary.representatives[order], log_prob_of(log_probs, vocabulary.assign(truth))
    )


def log_prob_of(log_probs: np.ndarray, group: np.ndarray) -> np.ndarray:
    """[N] the log-probability each row of `log_probs` [N, K] gives `group` [N]; a placement
    in no group (-1) gets `UNKNOWN_LOG_PROB`."""
    picked = np.take_along_axis(log_probs, np.maximum(group, 0)[:, None], -1)[:, 0]
    return np.where(group >= 0, picked, UNKNOWN_LOG_PROB)


def score(ranked: Ranked, truth: np.ndarray, tolerance: Tolerance) -> dict[str, float]:
    """Top-1 and top-3 hit rates (a candidate within the tolerance of the true placement), the
    mean log-likelihood of the true placement, the share of top-1 suggestions that are
    valid layouts, and how close a right first suggestion is: its mean `distance` from the
    true placement (0 is the editor's placement exactly, 1 the tolerance's edge)."""
    if not len(truth):
        return dict.fromkeys(METRICS, math.nan)
    apart = distance(ranked.candidates, truth[:, None, :], tolerance)  # [N, top]
    hit = apart <= 1.0
    right = hit[:, 0]
    return {
        "top1": float(right.mean()),
        "top3": float(hit[:, :3].any(-1).mean()),
        "log_likelihood": float(np.mean(ranked.true_log_prob)),
        "valid": float(valid_layout(ranked.candidates[:, 0]).mean()),
        "hit_distance": float(apart[right, 0].mean()) if right.any() else math.nan,
    }


METRICS = ("top1", "top3", "log_likelihood", "valid", "hit_distance")


def most_common(train: Onsets, vocabulary: Vocabulary):
    """Baseline: the track's most common placements, whatever else is on screen."""
    counts = np.zeros((N_TRACKS, len(vocabulary)))
    group = vocabulary.assign(train.placement)
    np.add.at(counts, (train.track[group >= 0], group[group >= 0]), 1)
    log_p = np.log((counts + 1.0) / (counts.sum(-1, keepdims=True) + len(vocabulary)))

    def predict(onsets: Onsets, top: int) -> Ranked:
        return rank_groups(log_p[onsets.track], vocabulary, onsets.placement, top)

    return predict


NEIGHBOUR_BLOCK = 8  # queries whose distances to a track's training onsets are taken at once


def nearest_neighbour(train: Onsets):
    """Baseline: the placements of the training onsets on the same track whose other tracks
    were laid out most alike (each track's on/off and values, the values in units of the
    tolerance), nearest first, each placement once. It gives no probabilities."""
    tolerance = Tolerance()
    scale = np.concatenate([[1.0, 10.0], tolerance.limits()])  # active, asset, values

    def features(layout: np.ndarray, track: np.ndarray) -> np.ndarray:
        f = layout / scale
        f[np.arange(len(track)), track] = 0.0  # the clip's own track says nothing
        return f.reshape(len(track), -1)

    known = features(train.layout, train.track)

    def predict(onsets: Onsets, top: int) -> Ranked:
        query = features(onsets.layout, onsets.track)
        out = np.zeros((len(onsets), top, len(PLACEMENT_PARAMS)))
        for t in np.unique(onsets.track).tolist():
            rows = np.flatnonzero(onsets.track == t)
            same = np.flatnonzero(train.track == t)
            if not len(same):
                same = np.arange(len(train))
            # a feature the same for every candidate adds the same to each distance: the
            # order is that of the features that vary (most tracks are never on)
            varying = np.ptp(known[same], axis=0) > 0
            pool, asked = known[same][:, varying], query[:, varying]
            for start in range(0, len(rows), NEIGHBOUR_BLOCK):
                block = rows[start : start + NEIGHBOUR_BLOCK]
                d = np.abs(pool[None] - asked[block, None]).sum(-1)  # [block, same]
                for i, order in zip(block, np.argsort(d, axis=1, kind="stable"), strict=True):
                    picks: list[np.ndarray] = []
                    for j in same[order]:
                        p = train.placement[j]
                        if all(distance(p, q, tolerance) > 1.0 for q in picks):
                            picks.append(p)
                        if len(picks) == top:
                            break
                    picks += [picks[-1]] * (top - len(picks)) if picks else []
                    if picks:
                        out[i] = picks
        return Ranked(out, np.full(len(onsets), math.nan))

    return predict


def next_step(values_at: Callable[[Onsets], np.ndarray]):
    """Baseline: the next-step model's values for the track at the onset, predicted from the
    steps before it (`values_at` gives them, [N, 7]; NaN where nothing comes before). One
    suggestion, no probabilities."""

    def predict(onsets: Onsets, top: int) -> Ranked:
        values = values_at(onsets)
        return Ranked(np.repeat(values[:, None], top, 1), np.full(len(onsets), math.nan))

    return predict


def model_predictor(model: PlacementModel, refined: bool = True):
    """The model's suggestions: its most likely groups, refined (or, with `refined=False`,
    the groups' representatives)."""

    def predict(onsets: Onsets, top: int) -> Ranked:
        log_p = model.log_probs(onsets.track, onsets.asset, onsets.layout)
        if not refined:
            return rank_groups(log_p, model.vocabulary, onsets.placement, top)
        _, placed, _ = model.suggestions(log_p, onsets.track, onsets.layout, top)
        return Ranked(placed, log_prob_of(log_p, model.vocabulary.assign(onsets.placement)))

    return predict


PREDICTORS = ("model", "most_common", "nearest_neighbour", "next_step")
TOP = 3  # suggestions scored per onset


@dataclass
class PlacementFit:
    """A fitted placement model and its scorecard beside the baselines on held-out onsets."""

    model: PlacementModel
    scorecard: dict[str, dict[str, float]]  # predictor -> `METRICS`
    scored_on: str  # "test", or "val" where the test split has no onsets
    onsets: dict[str, int]  # split -> onsets
    context_weights: dict[float, float]  # weight -> mean validation log-likelihood
    # per track of the held-out onsets ("V1"...): its onsets and each predictor's top-3
    by_track: dict[str, dict[str, float]] = field(default_factory=dict)
    # the model's scores with the groups' representatives as they are, without `follows`
    unrefined: dict[str, float] = field(default_factory=dict)
    # baseline -> how far the model's top-3 hit rate is above it, with a 95% interval
    margins: dict[str, dict[str, float]] = field(default_factory=dict)

    def beats_baselines(self) -> bool:
        """The model's top-3 hit rate above every baseline's by a clear margin (the whole 95%
        interval of the difference above zero), and its log-likelihood above the most common
        placement's (the one baseline with probabilities)."""
        model = self.scorecard["model"]
        return all(m["low"] > 0 for m in self.margins.values()) and (
            model["log_likelihood"] > self.scorecard["most_common"]["log_likelihood"]
        )


BOOTSTRAP = 2000  # resamples of the held-out timelines behind a margin's interval


def margin(video: np.ndarray, ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """How much more often `ours` hits than `theirs` (bool [N], an onset each, on the held-out
    timelines `video` [N]): the difference of the hit rates and its 95% interval, by a
    bootstrap that resamples whole timelines (the onsets of one timeline are not
    independent draws). Seeded: the same inputs give the same interval."""
    if not len(video):
        return dict.fromkeys(("difference", "low", "high"), math.nan)
    gain = ours.astype(np.float64) - theirs
    _, timeline = np.unique(video, return_inverse=True)
    per, count = np.bincount(timeline, gain), np.bincount(timeline).astype(np.float64)
    rng = np.random.default_rng(0)
    resampled = []
    for _ in range(0, BOOTSTRAP, 100):  # 100 resamples at a time: bounded memory
        pick = rng.integers(0, len(per), (100, len(per)))
        resampled.append(per[pick].sum(1) / count[pick].sum(1))
    low, high = np.percentile(np.concatenate(resampled), [2.5, 97.5])
    return {"difference": float(gain.mean()), "low": float(low), "high": float(high)}


def fit_placements(
    splits: dict[str, TrackFrames],
    next_step_values: Callable[[TrackFrames, Onsets], np.ndarray] | None = None,
) -> PlacementFit:
    """Fit the vocabulary and the model on the training split's onsets, choose the context's
    weight on the validation split's, and score the model and the baselines on the test
    split's. `next_step_values` (frames, onsets) -> [N, 7] is the next-step model's
    prediction at each onset; without it that baseline is left out."""
    onsets = {split: find_onsets(frames) for split, frames in splits.items()}
    train = onsets["train"]
    if not len(train):
        raise ValueError("no clip comes on in the training split: nothing to learn from")
    vocabulary = Vocabulary.fit(train.placement)
    model = PlacementModel.fit(train, vocabulary)
    val = onsets["val"] if len(onsets["val"]) else None
    weights = model.tune(val) if val is not None else {}
    model.follows = fit_follows(train, vocabulary, val)
    scored_on = "test" if len(onsets["test"]) else "val"
    held = onsets[scored_on]
    predictors = {
        "model": model_predictor(model),
        "most_common": most_common(train, vocabulary),
        "nearest_neighbour": nearest_neighbour(train),
    }
    if next_step_values is not None:
        frames = splits[scored_on]
        predictors["next_step"] = next_step(lambda o: next_step_values(frames, o))
    ranked = {name: predict(held, TOP) for name, predict in predictors.items()}
    tolerance = vocabulary.tolerance
    scorecard = {name: score(r, held.placement, tolerance) for name, r in ranked.items()}
    top3 = {  # [N] each onset's top-3 hit
        name: (distance(r.candidates[:, :3], held.placement[:, None], tolerance) <= 1.0).any(-1)
        for name, r in ranked.items()
    }
    by_track = {}
    for t in np.unique(held.track).tolist():
        mine = held.track == t
        by_track[f"V{t + 1}"] = {"onsets": int(mine.sum())} | {
            name: float(hit[mine].mean()) for name, hit in top3.items()
        }
    margins = {
        name: margin(held.video, top3["model"], top3[name]) for name in top3 if name != "model"
    }
    unrefined = score(model_predictor(model, refined=False)(held, TOP), held.placement, tolerance)
    return PlacementFit(
        model,
        scorecard,
        scored_on,
        {s: len(o) for s, o in onsets.items()},
        weights,
        by_track,
        unrefined,
        margins,
    )


@dataclass(frozen=True)
class Suggestion:
    placement: np.ndarray  # [7], in PLACEMENT_PARAMS order
    probability: float

    def as_dict(self) -> dict[str, float]:
        return dict(zip(PLACEMENT_PARAMS, map(float, self.placement), strict=True))


def suggest_for(
    model: PlacementModel, frames_values: np.ndarray, row: int, track: int, asset: int, top: int
) -> list[Suggestion]:
    """The `top` placements for a clip of class `asset` on `track` (0-based) coming on at
    `row` of a timeline's frames [rows, 20, 9], most likely first."""
    log_p = model.log_probs(
        np.array([track]), np.array([asset]), frames_values[row][None].astype(np.float64)
    )[0]
    layout = frames_values[row][None].astype(np.float64)
    groups, placed, count = model.suggestions(log_p[None], np.array([track]), layout, top)
    return [Suggestion(placed[0, i], float(np.exp(log_p[groups[0, i]]))) for i in range(count[0])]
