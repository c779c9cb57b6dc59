"""The code location Dagster loads (`dg dev`, `dagster dev -m xmlai_assets.definitions`)."""

from __future__ import annotations

import dagster as dg

from xmlai_assets.defs import automation
from xmlai_assets.defs.executors import executor_from_env
from xmlai_assets.defs.ingest import assets as ingest
from xmlai_assets.defs.preprocess import assets as preprocess
from xmlai_assets.defs.preprocess import checks as preprocess_checks
from xmlai_assets.defs.resources import DataPaths, TrainingHost
from xmlai_assets.defs.train import assets as train
from xmlai_assets.defs.train import placement

ASSET_MODULES = (ingest, preprocess, train, placement)
CHECK_MODULES = (ingest, preprocess_checks)


def build_definitions(
    paths: DataPaths | None = None, training: TrainingHost | None = None
) -> dg.Definitions:
    return dg.Definitions(
        # the champion is reported by the training step, not computed by one of its own
        assets=[*dg.load_assets_from_modules(ASSET_MODULES), train.champion_model],
        asset_checks=dg.load_asset_checks_from_modules(CHECK_MODULES),
        jobs=[
            automation.retrain_job,
            automation.quick_model_job,
            automation.full_model_job,
            automation.gpu_model_job,
        ],
        schedules=[automation.retrain_schedule],
        sensors=[automation.timeline_files_sensor],
        resources={
            "paths": paths or DataPaths.from_env(),
            "training": training or TrainingHost.from_env(),
        },
        # By default every step of a run in one process, as on the command line: a step costs
        # its work, not a fresh interpreter. XMLAI_EXECUTOR chooses Celery or Kubernetes.
        executor=executor_from_env(),
    )


defs = build_definitions()
