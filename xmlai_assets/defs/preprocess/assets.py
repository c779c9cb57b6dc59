"""Preprocess: master CSV → train/val/test split → scalers → 100-step training sequences."""

import dagster as dg

from xmlai_assets.defs.ingest.assets import TIMELINE_XML, master_training_data
from xmlai_assets.defs.metadata import (
    OWNERS,
    column_schema,
    file_metadata,
    table,
    verified_sha256,
)
from xmlai_assets.defs.resources import (
    SCALERS_POOL,
    SEQUENCES_POOL,
    SPLIT_POOL,
    DataPaths,
)
from xmlai_assets.features.preprocess import (
    FEATURES_VERSION,
    build_sequences,
    fit_train_scalers,
    split_master,
)
from xmlai_assets.features.scalers import ScalerKind
from xmlai_assets.features.split import DEFAULT_TEST_FRACTION, DEFAULT_VAL_FRACTION, SPLITS

LABELS = {"train": "training", "val": "held-out validation", "test": "held-out test"}

GROUP = "preprocess"
CODE_VERSION = f"features-{FEATURES_VERSION}"


class SplitConfig(dg.Config):
    val_fraction: float = DEFAULT_VAL_FRACTION
    """Share of timelines held out for validation: early stopping and promotion (rounded half
    up, at least 1; 110 → 17)."""
    test_fraction: float = DEFAULT_TEST_FRACTION
    """Share of timelines held out for the test: the scorecard, which nothing is chosen on
    (rounded half up; at least 1 from 3 timelines on; 0 turns it off)."""
    seed: int = 0
    """Which timelines are held out: the same seed and videos always give the same split."""


class ScalerConfig(dg.Config):
    kind: ScalerKind = "standard"
    """The center and scale that scikit-learn's StandardScaler, MinMaxScaler or RobustScaler
    fits, per parameter."""


class WindowConfig(dg.Config):
    window: int = 100
    """Steps per training sequence."""
    stride: int = 80
    """Steps between window starts (window - stride steps of overlap); at most `window`."""


def _data_version(sha256: str) -> dg.DataVersion:
    return dg.DataVersion(sha256[:32])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            f"{split}_data",
            deps=[master_training_data, TIMELINE_XML],
            group_name=GROUP,
            owners=OWNERS,
            code_version=CODE_VERSION,
            description=f"The master CSV's rows of the {label} timelines ({split}_data.csv); "
            "whole timelines are held out, never single rows.",
            kinds={"csv"},
        )
        for split, label in LABELS.items()
    ],
    name="video_split",
    pool=SPLIT_POOL,
)
def video_split(context: dg.AssetExecutionContext, config: SplitConfig, paths: DataPaths):
    verified_sha256(context, master_training_data.key, paths.layout)
    summary = split_master(paths.layout, config.val_fraction, config.test_fraction, config.seed)
    context.log.info(
        ", ".join(
            f"{len(ids)} {LABELS[name]} timelines ({summary.rows[name]} rows)"
            for name, ids in summary.split.by_name().items()
        )
    )
    for split in SPLITS:
        info = summary.files[split]
        rows_per_video = summary.rows_per_video[split]
        yield dg.MaterializeResult(
            asset_key=f"{split}_data",
            metadata={
                "dagster/row_count": summary.rows[split],
                "dagster/column_schema": column_schema(),
                "video_count": len(rows_per_video),
                "video_ids": sorted(rows_per_video),
                "rows_per_video": rows_per_video,
                "val_fraction": config.val_fraction,
                "test_fraction": config.test_fraction,
                "seed": config.seed,
                **file_metadata(info),
            },
            data_version=_data_version(info.sha256),
        )


@dg.asset(
    deps=["train_data", TIMELINE_XML],
    pool=SCALERS_POOL,
    group_name=GROUP,
    owners=OWNERS,
    code_version=CODE_VERSION,
    description="One scaler per continuous parameter (scale, x, y, crop_l..crop_b), z = (x - "
    "center) / scale as scikit-learn's Standard, MinMax or Robust scaler fits it, pooled over the "
    "20 tracks and fitted on the active entries of the training split only (scalers.json; "
    "scalers.pkl holds the same scalers as objects for other tools).",
    kinds={"numpy"},
)
def scalers(
    context: dg.AssetExecutionContext, config: ScalerConfig, paths: DataPaths
) -> dg.MaterializeResult:
    verified_sha256(context, dg.AssetKey("train_data"), paths.layout)
    summary = fit_train_scalers(paths.layout, config.kind)
    context.log.info(f"{config.kind} scalers fitted on {summary.rows} training rows")
    stats = [{"param": param, **values} for param, values in summary.stats.items()]
    return dg.MaterializeResult(
        metadata={
            "kind": config.kind,
            "fitted_on_rows": summary.rows,
            "fitted_on_videos": summary.videos,
            "statistics": table(
                stats,
                {"param": "string", "count": "int"}
                | dict.fromkeys(("center", "scale", "mean", "std", "min", "max"), "float"),
            ),
            **file_metadata(summary.pickle),
            **file_metadata(summary.json, prefix="json_"),
        },
        data_version=_data_version(summary.json.sha256),
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            f"{split}_sequences",
            deps=[f"{split}_data", "scalers", TIMELINE_XML],
            group_name=GROUP,
            owners=OWNERS,
            code_version=CODE_VERSION,
            description=f"Windows of the {label} timelines ({split}_sequences.npz): sequences "
            "float32 "
            "[N, window, 180] (per track: active, asset, then the scaled continuous values; 0 "
            "where a track is off), masks bool [N, window] (False on end padding), video_ids "
            "[N], start_times [N] in seconds, first_targets [N] (where a window's unscored "
            "targets begin: each step is scored once).",
            kinds={"numpy"},
        )
        for split, label in LABELS.items()
    ],
    name="training_sequences",
    pool=SEQUENCES_POOL,
)
def training_sequences(context: dg.AssetExecutionContext, config: WindowConfig, paths: DataPaths):
    layout = paths.layout
    for split in SPLITS:
        verified_sha256(context, dg.AssetKey(f"{split}_data"), layout)
    verified_sha256(context, dg.AssetKey("scalers"), layout, "json_sha256")
    summaries = build_sequences(layout, config.window, config.stride)
    for split in SPLITS:
        summary = summaries[split]
        stats = summary.stats
        context.log.info(
            f"{split}: {stats['windows']} windows of {config.window} steps from "
            f"{stats['videos']} timelines, {stats['valid_step_ratio']:.1%} real steps"
        )
        yield dg.MaterializeResult(
            asset_key=f"{split}_sequences",
            metadata={
                "dagster/row_count": stats["windows"],
                "windows": stats["windows"],
                "video_count": stats["videos"],
                "video_ids": summary.video_ids,
                "real_steps": stats["real_steps"],
                "valid_step_ratio": float(round(stats["valid_step_ratio"], 6)),
                "active_histogram": stats["active_histogram"],
                "asset_histogram": stats["asset_histogram"],
                "shapes": summary.shapes,
                "array_bytes": summary.nbytes,
                "window": config.window,
                "stride": config.stride,
                **file_metadata(summary.file),
            },
            data_version=_data_version(summary.file.sha256),
        )
