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
  `P(group | t, a) * prod_j P(what track j shows | group)`: the first counted on the
  training onsets, backed off to `P(group | t)` and `P(group)` where `(t, a)` is rare; the
  second over the other tracks `j`, each showing one of the groups, another placement or
  nothing (naive Bayes, add-one smoothed). A suggestion is a group's representative.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xmlai_assets.features.frames import TrackFrames
from xmlai_assets.timeline.schema import ACTIVE, ASSET, CONTINUOUS_PARAMS, N_TRACKS, VALUES

PLACEMENT_PARAMS = CONTINUOUS_PARAMS  # scale, x, y, crop_l, crop_r, crop_t, crop_b


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


def context_symbols(layout: np.ndarray, vocabulary: Vocabulary) -> np.ndarray:
    """What each track shows in `layout` [..., 20, 9]: its group, K for another placement,
    K + 1 for nothing."""
    groups = vocabulary.assign(layout[..., VALUES])
    k = len(vocabulary)
    return np.where(layout[..., ACTIVE] > 0.5, np.where(groups >= 0, groups, k), k + 1)


N_ASSETS = 10
BACKOFF = 2.0  # a (track, asset) cell's counts weigh against its track's as this many onsets
CONTEXT_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
UNKNOWN_LOG_PROB = math.log(1e-6)  # a placement in no group: as unlikely as a model says


@dataclass
class PlacementModel:
    """Counts of the training onsets: groups by track and asset class, and what each other
    track shows given the group."""

    vocabulary: Vocabulary
    by_track_asset: np.ndarray  # [20, 10, K]
    seen_with: np.ndarray  # [K, 20, K + 2]: group, other track, what it shows
    # per track, how much the other tracks count for a clip on it (0: not at all; 1: naive
    # Bayes as is), chosen on the validation onsets by `tune`
    context_weight: np.ndarray = field(default_factory=lambda: np.ones(N_TRACKS))

    @classmethod
    def fit(cls, onsets: Onsets, vocabulary: Vocabulary) -> PlacementModel:
        k = len(vocabulary)
        group = vocabulary.assign(onsets.placement)
        known = group >= 0  # all but the rarest placements, beyond the vocabulary's bound
        track, asset, group = onsets.track[known], onsets.asset[known], group[known]
        by_track_asset = np.zeros((N_TRACKS, N_ASSETS, k))
        np.add.at(by_track_asset, (track, asset.clip(0, N_ASSETS - 1), group), 1)
        seen_with = np.zeros((k, N_TRACKS, k + 2))
        symbols = context_symbols(onsets.layout[known], vocabulary)  # [N, 20]
        for j in range(N_TRACKS):
            other = track != j  # the clip's own track is not its context
            np.add.at(seen_with, (group[other], j, symbols[other, j]), 1)
        return cls(vocabulary, by_track_asset, seen_with)

    def log_probs(self, track: np.ndarray, asset: np.ndarray, layout: np.ndarray) -> np.ndarray:
        """[N, K] log-probabilities of each group for clips on `track` [N] of class `asset`
        [N] among the other tracks of `layout` [N, 20, 9] (the clip's own track is ignored)."""
        k = len(self.vocabulary)
        everything = self.by_track_asset.sum((0, 1))
        overall = (everything + 1.0) / (everything.sum() + k)
        per_track = self.by_track_asset.sum(1)  # [20, K]
        p_track = (per_track + BACKOFF * overall) / (per_track.sum(-1, keepdims=True) + BACKOFF)
        cell = self.by_track_asset[track, asset.clip(0, N_ASSETS - 1)]  # [N, K]
        prior = (cell + BACKOFF * p_track[track]) / (cell.sum(-1, keepdims=True) + BACKOFF)
        score = np.log(prior)
        symbols = context_symbols(layout, self.vocabulary)  # [N, 20]
        likely = np.log(
            (self.seen_with + 1.0) / (self.seen_with.sum(-1, keepdims=True) + k + 2)
        )  # [K, 20, K + 2]
        for j in range(N_TRACKS):
            term = likely[:, j, symbols[:, j]].T  # [N, K]
            # the tracks on screen beside the clip speak; an empty track says little
            speaks = (track != j) & (symbols[:, j] <= k)
            score += self.context_weight[track, None] * np.where(speaks[:, None], term, 0.0)
        return score - np.logaddexp.reduce(score, axis=-1, keepdims=True)

    def tune(self, onsets: Onsets, weights=CONTEXT_WEIGHTS) -> dict[float, float]:
        """Set each track's `context_weight` to the one of `weights` under which its onsets
        of `onsets` (the validation split's) are most likely; a track without any takes the
        weight best over all of them. Returns each weight's mean log-likelihood over all."""
        truth = self.vocabulary.assign(onsets.placement)
        each = np.zeros((len(weights), len(onsets)))
        for i, weight in enumerate(weights):
            self.context_weight = np.full(N_TRACKS, float(weight))
            log_p = self.log_probs(onsets.track, onsets.asset, onsets.layout)
            each[i] = log_prob_of(log_p, truth)
        overall = each.mean(1)
        chosen = np.full(N_TRACKS, float(weights[int(np.argmax(overall))]))
        for t in np.unique(onsets.track):
            chosen[t] = weights[int(np.argmax(each[:, onsets.track == t].mean(1)))]
        self.context_weight = chosen
        return {float(w): float(m) for w, m in zip(weights, overall, strict=True)}

    def to_json(self) -> bytes:
        body = {
            "vocabulary": self.vocabulary.as_dict(),
            "by_track_asset": self.by_track_asset.tolist(),
            "seen_with": self.seen_with.tolist(),
            "context_weight": self.context_weight.tolist(),
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> PlacementModel:
        body = json.loads(data)
        return cls(
            Vocabulary.from_dict(body["vocabulary"]),
            np.array(body["by_track_asset"], dtype=np.float64),
            np.array(body["seen_with"], dtype=np.float64),
            np.array(body["context_weight"], dtype=np.float64),
        )


@dataclass
class Ranked:
    """A predictor's suggestions for each onset: candidate placements best first, and the
    log-probability it gives the true placement's group (NaN where it gives none)."""

    candidates: np.ndarray  # [N, top, 7]
    true_log_prob: np.ndarray  # [N]


def rank_groups(log_probs: np.ndarray, vocabulary: Vocabulary, truth: np.ndarray, top: int):
    """`Ranked` from per-group log-probabilities [N, K]."""
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
    mean log-likelihood of the true placement and the share of top-1 suggestions that are
    valid layouts."""
    if not len(truth):
        return dict.fromkeys(("top1", "top3", "log_likelihood", "valid"), math.nan)
    hit = distance(ranked.candidates, truth[:, None, :], tolerance) <= 1.0  # [N, top]
    return {
        "top1": float(hit[:, :1].any(-1).mean()),
        "top3": float(hit[:, :3].any(-1).mean()),
        "log_likelihood": float(np.mean(ranked.true_log_prob)),
        "valid": float(valid_layout(ranked.candidates[:, 0]).mean()),
    }


def most_common(train: Onsets, vocabulary: Vocabulary):
    """Baseline: the track's most common placements, whatever else is on screen."""
    counts = np.zeros((N_TRACKS, len(vocabulary)))
    group = vocabulary.assign(train.placement)
    np.add.at(counts, (train.track[group >= 0], group[group >= 0]), 1)
    log_p = np.log((counts + 1.0) / (counts.sum(-1, keepdims=True) + len(vocabulary)))

    def predict(onsets: Onsets, top: int) -> Ranked:
        return rank_groups(log_p[onsets.track], vocabulary, onsets.placement, top)

    return predict


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
        for i in range(len(onsets)):
            same = np.flatnonzero(train.track == onsets.track[i])
            if not len(same):
                same = np.arange(len(train))
            d = np.abs(known[same] - query[i]).sum(-1)
            picks: list[np.ndarray] = []
            for j in same[np.argsort(d, kind="stable")]:
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


def model_predictor(model: PlacementModel):
    def predict(onsets: Onsets, top: int) -> Ranked:
        log_p = model.log_probs(onsets.track, onsets.asset, onsets.layout)
        return rank_groups(log_p, model.vocabulary, onsets.placement, top)

    return predict


PREDICTORS = ("model", "most_common", "nearest_neighbour", "next_step")
TOP = 3  # suggestions scored per onset


@dataclass
class PlacementFit:
    """A fitted placement model and its scorecard beside the baselines on held-out onsets."""

    model: PlacementModel
    scorecard: dict[str, dict[str, float]]  # predictor -> top1, top3, log_likelihood, valid
    scored_on: str  # "test", or "val" where the test split has no onsets
    onsets: dict[str, int]  # split -> onsets
    context_weights: dict[float, float]  # weight -> mean validation log-likelihood

    def beats_baselines(self) -> bool:
        """The model's top-3 hit rate above every baseline's, and its log-likelihood above
        the most common placement's (the one baseline with probabilities)."""
        model = self.scorecard["model"]
        others = [self.scorecard[name] for name in PREDICTORS[1:] if name in self.scorecard]
        return all(model["top3"] > other["top3"] for other in others) and (
            model["log_likelihood"] > self.scorecard["most_common"]["log_likelihood"]
        )


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
    weights = model.tune(onsets["val"]) if len(onsets["val"]) else {}
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
    scorecard = {
        name: score(predict(held, TOP), held.placement, vocabulary.tolerance)
        for name, predict in predictors.items()
    }
    return PlacementFit(
        model, scorecard, scored_on, {s: len(o) for s, o in onsets.items()}, weights
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
    order = np.argsort(-log_p, kind="stable")[:top]
    return [Suggestion(model.vocabulary.representatives[k], float(np.exp(log_p[k]))) for k in order]
