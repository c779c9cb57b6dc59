"""The placement model: where a new clip should go, learned from the clip onsets of the
training split (`model/placement.py`), scored on held-out timelines beside its baselines."""

import dagster as dg

from xmlai_assets.defs.ingest.assets import TIMELINE_XML
from xmlai_assets.defs.metadata import OWNERS, table, table_number, verified_sha256
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.features.frames import load_track_frames
from xmlai_assets.paths import SPLITS, split_csv

GROUP = "train"


PLACEMENT_VERSION = "1"  # bump when the vocabulary, the model or its scoring changes


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
            "other tracks' layout, the champion's next-step prediction) and its "
            "log-likelihood beats the most common placements'. "
            "A warning otherwise: the version is kept.",
        )
    ],
)
def placement_model(context: dg.AssetExecutionContext, paths: DataPaths):
    from xmlai_assets.model.placement import PREDICTORS, fit_placements
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
        "beats_baselines": beats,
    }
    saved = save_placement_version(layout.models, model.to_json(), metadata)
    context.log.info(
        f"placement {saved.name}: {len(model.vocabulary)} placements from "
        f"{fit.onsets['train']} training onsets; top-3 on {fit.scored_on} "
        + ", ".join(f"{name} {card['top3']:.3f}" for name, card in fit.scorecard.items())
    )
    scorecard = table(
        [
            {"predictor": name, **{k: table_number(v) for k, v in fit.scorecard[name].items()}}
            for name in PREDICTORS
            if name in fit.scorecard
        ],
        {"predictor": "string", "top1": "float", "top3": "float"}
        | {"log_likelihood": "float", "valid": "float"},
    )
    yield dg.MaterializeResult(
        metadata={
            "version": dg.MetadataValue.path(saved.location),
            "version_name": saved.name,
            "scorecard": scorecard,
            "scored_on": fit.scored_on,
            "placements": len(model.vocabulary),
            "context_weight": dg.MetadataValue.json(
                {f"V{t + 1}": w for t, w in enumerate(model.context_weight.tolist())}
            ),
            **{f"{split}_onsets": n for split, n in fit.onsets.items()},
            "model_sha256": saved.weights_sha256,
        },
        data_version=dg.DataVersion(saved.weights_sha256[:32]),
    )
    model_top3 = fit.scorecard["model"]["top3"]
    baselines = [name for name in PREDICTORS[1:] if name in fit.scorecard]
    best = max(baselines, key=lambda name: fit.scorecard[name]["top3"])
    yield dg.AssetCheckResult(
        check_name="beats_baselines",
        passed=beats,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"top-3 hit rate {model_top3:.3f} on {fit.scored_on} onsets; the best baseline, "
            f"{best}, {fit.scorecard[best]['top3']:.3f}"
        ),
        metadata={"scorecard": scorecard},
    )
