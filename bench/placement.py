"""Placement model quality as the corpus grows, one run on one machine:

the synthetic corpus (`generate_timeline(0..N-1)`, its ground-truth tables at 10 Hz, split
by the pipeline's own rule) at each size of `--timelines`; for each, the placement model's
scorecard beside its baselines on the test onsets, the model without its refinements, the
model's lead in top-3 over each baseline with its 95% interval, and each track's top-3 hit
rate. The next-step baseline needs a trained model and is left out.

    make bench            (or: .venv/bin/python bench/placement.py [--timelines 110,1100])
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from xmlai_assets.features.frames import TrackFrames
from xmlai_assets.features.split import split_videos
from xmlai_assets.model.placement import METRICS, fit_placements
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline.schema import N_TRACKS, TRACK_COLUMNS, TRACK_PARAMS


def frames_of(tables) -> TrackFrames:
    lengths = np.array([len(t) for t in tables], dtype=np.int64)
    values = np.concatenate([t[list(TRACK_COLUMNS)].to_numpy(np.float32) for t in tables])
    return TrackFrames(
        video_ids=[str(t["video_id"].iloc[0]) for t in tables],
        offsets=np.cumsum(lengths) - lengths,
        lengths=lengths,
        time=np.concatenate([t["time"].to_numpy() for t in tables]),
        values=values.reshape(len(values), N_TRACKS, len(TRACK_PARAMS)),
    )


def corpus_splits(n: int) -> dict[str, TrackFrames]:
    tables = {t.name: t.truth() for t in map(generate_timeline, range(n))}
    split = split_videos(tables)
    return {
        name: frames_of([tables[v] for v in getattr(split, name)])
        for name in ("train", "val", "test")
    }


def report(n: int) -> None:
    t0 = time.perf_counter()
    splits = corpus_splits(n)
    t1 = time.perf_counter()
    fit = fit_placements(splits)
    t2 = time.perf_counter()
    print(
        f"\n{n} timelines: {fit.onsets['train']} training, {fit.onsets['val']} validation and "
        f"{fit.onsets[fit.scored_on]} {fit.scored_on} onsets, {len(fit.model.vocabulary)} "
        f"placements, {len(fit.model.follows)} refinements "
        f"(corpus {t1 - t0:.1f} s, fit and scoring {t2 - t1:.1f} s)"
    )
    print(f"  {'':22}" + "".join(f"{m:>15}" for m in METRICS))
    rows = {**fit.scorecard, "model_unrefined": fit.unrefined}
    for name, card in rows.items():
        print(f"  {name:22}" + "".join(f"{card[m]:15.3f}" for m in METRICS))
    for name, gap in fit.margins.items():
        print(
            f"  top-3, model - {name:18} {gap['difference']:+.3f} "
            f"(95% interval {gap['low']:+.3f} to {gap['high']:+.3f}, timelines resampled)"
        )
    print(f"  beats_baselines: {fit.beats_baselines()}")
    names = list(fit.scorecard)
    print(f"  top-3 by track {'onsets':>9}" + "".join(f"{name:>19}" for name in names))
    for track, row in fit.by_track.items():
        print(f"  {track:15}{row['onsets']:10d}" + "".join(f"{row[name]:19.3f}" for name in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timelines", default="110,1100", help="corpus sizes, comma-separated")
    args = parser.parse_args()
    for n in map(int, args.timelines.split(",")):
        report(n)


if __name__ == "__main__":
    main()
