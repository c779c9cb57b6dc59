"""The placement model: where a new clip should go, learned from the clip onsets of the
training split (`model/placement.py`), scored on held-out timelines beside its baselines."""

import dagster as dg

from xmlai_assets.defs.ingest.assets import TIMELINE_XML
from xmlai_assets.defs.metadata import OWNERS, table, table_number, verified_sha256
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.features.frames import load_track_frames
from xmlai_assets.paths import SPLITS, split_csv

GROUP = "train"


PLACEMENT_VERSION = "2"  # bump when the vocabulary, the model or its scoring changes


def _next_step_of_champion(context, layout):
    """The champion's next-step values at onsets, for its baseline; None without one."""
    from xmlai_assets.model.store import ModelStoreError, load_model, next_step_values

    try:
        loaded = load_model("champion", layout.models)
    except ModelStoreError as exc:
        context.log.info(f"no next-step baseline: {exc}")
        return None
    context.log.info(f"next-step baseline: the champion, {loaded.version}")
    return lambda frames, onsets: next_step_values(
        loaded, frames.values, frames.offsets, onsets.row, onsets.track
    )


def context_weights(model) -> dict[str, dict[str, float]]:
    """How much each other track on screen counts for a clip on a track the training onsets
    show, the tracks that count for nothing left out."""
    placed = model.by_track_asset.sum((1, 2)) > 0
    return {
        f"V{t + 1}": {
            f"V{j + 1}": w for j, w in enumerate(model.context_weight[t].tolist()) if w > 0
        }
        for t in range(len(placed))
        if placed[t]
    }


@dg.asset(
    # after training: the champion's next-step prediction is one of the baselines; the
    # watched folder too, as for trained_model, so that a changed file marks it stale
    deps=[*(f"{split}_data" for split in SPLITS), "trained_model", TIMELINE_XML],
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"placement-{PLACEMENT_VERSION}",
    kinds={"numpy"},
    description="Where a new clip should go: the placements of the training split's clip "
    "onsets grouped into a vocabulary, and a model of which one a clip on a track takes given "
    "what the other tracks show. Each run writes an immutable placement version in the model "
    "store; `xmlai-assets suggest` reads the latest.",
    check_specs=[
        dg.AssetCheckSpec(
            "beats_baselines",
            asset="placement_model",
            description="Passes when the model's top-3 hit rate on held-out onsets beats every "
            "baseline's (the track's most common placements, the nearest neighbour by the "
            "other tracks' layout, the champion's next-step prediction) by a clear margin: the "
            "95% interval of the difference, with the held-out timelines resampled, lies above "
            "zero. Its log-likelihood must also beat the most common placements'. "
            "A warning otherwise: the version is kept.",
        )
    ],
)
def placement_model(context: dg.AssetExecutionContext, paths: DataPaths):
    from xmlai_assets.model.placement import METRICS, PREDICTORS, fit_placements
    from xmlai_assets.model.store import save_placement_version

    layout = paths.layout
    hashes, splits = {}, {}
    for split in SPLITS:
        hashes[f"{split}_data"] = verified_sha256(context, dg.AssetKey(f"{split}_data"), layout)
        with layout.artifacts.reading(split_csv(split)) as path:
            splits[split] = load_track_frames(path)
    fit = fit_placements(splits, _next_step_of_champion(context, layout))
    model = fit.model
    beats = fit.beats_baselines()
    metadata = {
        "placement_version": PLACEMENT_VERSION,
        "data_versions": hashes,
        "scored_on": fit.scored_on,
        "scorecard": fit.scorecard,
        "onsets": fit.onsets,
        "placements": len(model.vocabulary),
        "context_weight": model.context_weight.tolist(),
        "by_track": fit.by_track,
        "unrefined": fit.unrefined,
        "top3_margin": fit.margins,
        "refinements": len(model.follows),
        "beats_baselines": beats,
    }
    saved = save_placement_version(layout.models, model.to_json(), metadata)
    context.log.info(
        f"placement {saved.name}: {len(model.vocabulary)} placements from "
        f"{fit.onsets['train']} training onsets; top-3 on {fit.scored_on} "
        + ", ".join(f"{name} {card['top3']:.3f}" for name, card in fit.scorecard.items())
    )
    predictors = [name for name in PREDICTORS if name in fit.scorecard]
    rows = {name: fit.scorecard[name] for name in predictors} | {"model_unrefined": fit.unrefined}
    scorecard = table(
        [
            {"predictor": name, **{k: table_number(v) for k, v in card.items()}}
            for name, card in rows.items()
        ],
        {"predictor": "string"} | dict.fromkeys(METRICS, "float"),
    )
    margins = table(
        [
            {"baseline": name} | {k: table_number(v) for k, v in fit.margins[name].items()}
            for name in predictors
            if name in fit.margins
        ],
        {"baseline": "string", "difference": "float", "low": "float", "high": "float"},
    )
    by_track = table(
        [
            {"track": track, "onsets": row["onsets"]}
            | {name: table_number(row[name]) for name in predictors}
            for track, row in fit.by_track.items()
        ],
        {"track": "string", "onsets": "int"} | dict.fromkeys(predictors, "float"),
    )
    yield dg.MaterializeResult(
        metadata={
            "version": dg.MetadataValue.path(saved.location),
            "version_name": saved.name,
            "scorecard": scorecard,
            "top3_margin": margins,
            "top3_by_track": by_track,
            "scored_on": fit.scored_on,
            "refinements": len(model.follows),
            "placements": len(model.vocabulary),
            "context_weight": dg.MetadataValue.json(context_weights(model)),
            **{f"{split}_onsets": n for split, n in fit.onsets.items()},
            "model_sha256": saved.weights_sha256,
        },
        data_version=dg.DataVersion(saved.weights_sha256[:32]),
    )
    model_top3 = fit.scorecard["model"]["top3"]
    # the baseline the model is least clearly ahead of
    closest = min(fit.margins, key=lambda name: fit.margins[name]["low"])
    gap = fit.margins[closest]
    yield dg.AssetCheckResult(
        check_name="beats_baselines",
        passed=beats,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"top-3 hit rate {model_top3:.3f} on {fit.scored_on} onsets; against {closest} "
            f"({fit.scorecard[closest]['top3']:.3f}) {gap['difference']:+.3f}, 95% interval "
            f"{gap['low']:+.3f} to {gap['high']:+.3f} (timelines resampled)"
        ),
        metadata={"scorecard": scorecard, "top3_margin": margins},
    )
