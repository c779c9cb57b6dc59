"""Train: the multi-track transformer on next-step prediction, evaluated against baselines."""

import base64
import dataclasses
import math
import typing

import dagster as dg
import pydantic

from xmlai_assets.atomic import file_lock
from xmlai_assets.defs.metadata import OWNERS, table, verified_sha256
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.model.pipeline import MODEL_VERSION, fit_model
from xmlai_assets.model.train import TrainConfig

GROUP = "train"


def _config_class() -> type[dg.Config]:
    """The launchpad's config: every field of TrainConfig, its default and its description."""
    hints = typing.get_type_hints(TrainConfig)
    specs = {}
    for f in dataclasses.fields(TrainConfig):
        default = (
            {"default_factory": f.default_factory}
            if f.default_factory is not dataclasses.MISSING
            else {"default": f.default}
        )
        specs[f.name] = (hints[f.name], pydantic.Field(description=f.metadata["doc"], **default))
    return pydantic.create_model("TrainModelConfig", __base__=dg.Config, **specs)


TrainModelConfig = _config_class()
BASELINES = ("model", "persistence", "majority_mean")


def _evaluation_table(metrics: dict[str, dict[str, float]]) -> dg.MetadataValue:
    def cell(value: float) -> float | None:
        return round(value, 6) if math.isfinite(value) else None  # nothing scored: empty

    records = [
        {"metric": key, **{name: cell(metrics[name][key]) for name in BASELINES}}
        for key in metrics["model"]
    ]
    return table(records, {"metric": "string"} | dict.fromkeys(BASELINES, "float"))


@dg.asset(
    deps=["train_sequences", "val_sequences", "scalers"],
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"model-{MODEL_VERSION}",
    description="The multi-track transformer trained to predict the next step's layout of all "
    "20 tracks; each run writes an immutable data/models/v{NNNN}/ and moves the champion "
    "pointer when the model beats copying the previous step.",
    kinds={"pytorch"},
    check_specs=[
        dg.AssetCheckSpec(
            "beats_persistence",
            asset="trained_model",
            description="The model's validation loss is below that of copying the previous "
            "step (the champion moves only then).",
        )
    ],
)
def trained_model(context: dg.AssetExecutionContext, config: TrainModelConfig, paths: DataPaths):
    layout = paths.layout
    settings = TrainConfig.from_dict(
        {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)}
    )
    verified_sha256(context, dg.AssetKey("train_sequences"), layout.train_sequences)
    verified_sha256(context, dg.AssetKey("val_sequences"), layout.val_sequences)
    verified_sha256(context, dg.AssetKey("scalers"), layout.scalers_json, "json_sha256")
    with file_lock(layout.lock_file("trained_model")):
        summary = fit_model(
            layout,
            settings,
            log=context.log.info,
            extra_metadata={"dagster_run_id": context.run.run_id, "dagster": dg.__version__},
        )
    result, metrics = summary.result, summary.metrics
    history = result.history
    best = next(r for r in history if r.epoch == result.best_epoch)
    png = base64.b64encode(summary.loss_curve_png).decode()
    yield dg.MaterializeResult(
        metadata={
            "version": dg.MetadataValue.path(str(summary.version)),
            "champion": summary.is_champion,
            "parameters": summary.parameters,
            "epochs_run": len(history),
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "resumed_from_epoch": result.resumed_from_epoch,
            "best_train_loss": best.train_loss,
            "best_val_loss": result.best_val_loss,
            "final_train_loss": history[-1].train_loss,
            "final_val_loss": history[-1].val_loss,
            "val_loss": metrics["model"]["loss"],
            "persistence_val_loss": metrics["persistence"]["loss"],
            "majority_mean_val_loss": metrics["majority_mean"]["loss"],
            "evaluation": _evaluation_table(metrics),
            "epochs": table(
                [dataclasses.asdict(r) for r in history],
                {"epoch": "int", "train_loss": "float", "val_loss": "float"}
                | {"learning_rate": "float", "seconds": "float", "skipped_steps": "int"},
            ),
            "loss_curve": dg.MetadataValue.md(f"![loss curve](data:image/png;base64,{png})"),
            "device": result.device,
            "wall_seconds": round(result.seconds, 2),
            "weights_bytes": summary.weights_bytes,
            "weights_sha256": summary.weights_sha256,
            "data_versions": summary.data_versions,
        },
        data_version=dg.DataVersion(summary.weights_sha256[:32]),
    )
    yield dg.AssetCheckResult(
        check_name="beats_persistence",
        passed=summary.beats_persistence,
        metadata={
            "model_val_loss": metrics["model"]["loss"],
            "persistence_val_loss": metrics["persistence"]["loss"],
            "majority_mean_val_loss": metrics["majority_mean"]["loss"],
            "change_step_loss_model": metrics["model"]["change_loss"],
            "change_step_loss_persistence": metrics["persistence"]["change_loss"],
        },
    )
