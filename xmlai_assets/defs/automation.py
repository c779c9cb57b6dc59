"""What runs by itself: new files are parsed as they arrive; the model is retrained on a schedule.

- The sensor `timeline_files_sensor` watches the timelines folder. It adds a partition for
  each new file and removes the partition of a file that is gone. It launches a frames run
  for each new or changed file (by content hash), and never for an unchanged one.
- The schedule `retrain_schedule` rebuilds the master CSV, the preprocessing and the model
  from everything ingested so far, with every blocking check in the same run. Training runs
  on it or on demand, never once per file. Its cron, timezone and run-config preset come from
  the environment: XMLAI_RETRAIN_CRON (default "0 3 * * 1", Mondays 03:00),
  XMLAI_RETRAIN_TIMEZONE (default "UTC") and XMLAI_RETRAIN_PRESET (a YAML file like those in
  configs/; default: the asset defaults).
"""

import hashlib
import json
import os
from pathlib import Path

import dagster as dg
import yaml

from xmlai_assets.defs.ingest.assets import TIMELINE_XML
from xmlai_assets.defs.metadata import observation_tags
from xmlai_assets.defs.partitions import timeline_files
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.paths import PROJECT_ROOT, scan_timeline_folder
from xmlai_assets.timeline.ingest import folder_version

FRAMES = dg.AssetKey("timeline_frames")
MASTER = dg.AssetKey("master_training_data")

FROM_MASTER = dg.AssetSelection.assets(MASTER).downstream().materializable()

retrain_job = dg.define_asset_job(
    "retrain",
    selection=FROM_MASTER,
    description="The master CSV, preprocessing, a new model version and a new placement "
    "version from every timeline ingested so far, with all their checks (the schedule's job; "
    "XMLAI_RETRAIN_PRESET sets its model).",
)


def preset(name: str) -> dict:
    """A run-config preset from configs/ (the launchpad opens with it, and any field can still
    be changed there)."""
    return yaml.safe_load((PROJECT_ROOT / "configs" / name).read_text())


def model_job(name: str, preset_file: str, what: str):
    """One click: the master CSV, preprocessing and a model version with a preset's settings."""
    return dg.define_asset_job(
        name,
        selection=FROM_MASTER,
        config=preset(preset_file),
        description=f"One click: the master CSV, preprocessing and {what}",
    )


quick_model_job = model_job(
    "quick_model",
    "train_quick.yaml",
    "a SMALL model version (configs/train_quick.yaml): about a minute on a laptop CPU, for the "
    "bundled sample and for trying things out.",
)
full_model_job = model_job(
    "full_model",
    "train_full.yaml",
    "the FULL model version (configs/train_full.yaml, the defaults): minutes on a GPU, most of "
    "an hour on a laptop CPU.",
)
gpu_model_job = model_job(
    "gpu_model",
    "train_gpu.yaml",
    "the same full model trained on a GPU with large batches (configs/train_gpu.yaml): seconds "
    "on an H100, to the loss of the default batch.",
)


def _listing_digest(folder: Path, names: list[str]) -> str:
    """A digest of the folder's names, sizes and modification times: equal on the next tick
    means nothing to do, without reading a file."""
    digest = hashlib.sha256()
    for name in names:
        try:
            st = (folder / name).stat()
        except OSError:
            continue
        digest.update(
            f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape")
        )
    return digest.hexdigest()[:32]


@dg.sensor(
    name="timeline_files_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=[FRAMES, MASTER],
    description="Watches the timelines folder: a partition for each new file, re-parsing for a "
    "changed one (content hash), removal for a file that is gone, and an observation of "
    "timeline_xml whose data version marks the master CSV and all after it stale. Unchanged "
    "files are never parsed again.",
)
def timeline_files_sensor(context: dg.SensorEvaluationContext, paths: DataPaths):
    layout = paths.layout
    folder = layout.timelines_dir
    names, skipped = scan_timeline_folder(folder)
    known = set(context.instance.get_dynamic_partitions(timeline_files.name))
    cursor = json.loads(context.cursor) if context.cursor else {}
    listing = _listing_digest(folder, names)
    if cursor.get("listing") == listing and known == set(names):
        return dg.SkipReason("no file was added, changed or removed")
    for name, reason in sorted(skipped.items()):
        context.log.warning(f"{folder / name}: not a partition: {reason}")
    folder = folder_version(layout)
    version, hashes = folder.version, folder.hashes
    added = sorted(set(hashes) - known)
    removed = sorted(known - set(hashes))
    runs, changed = [], []
    for name in sorted(hashes):
        if not folder.needs_parse(name):
            continue  # parsed (or refused) from exactly this content already
        if name not in added:
            changed.append(name)
        # the parse count in the key: content that comes back after a change is parsed again
        report = folder.reports[name]
        generation = report.get("generation", 0) if report else 0
        runs.append(
            dg.RunRequest(
                partition_key=name,
                asset_selection=[FRAMES],
                run_key=f"{name}:{generation}:{hashes[name][:16]}",
                tags={"xmlai/trigger": "new file" if name in added else "changed file"},
            )
        )
    if removed:
        # the master CSV must drop the rows of files that are gone
        runs.append(dg.RunRequest(asset_selection=[MASTER], run_key=f"removed:{version}"))
    requests = []
    if added:
        requests.append(timeline_files.build_add_request(added))
    if removed:
        requests.append(timeline_files.build_delete_request(removed))
    events = []
    if cursor.get("version") != version:
        events.append(
            dg.AssetObservation(
                asset_key=TIMELINE_XML,
                metadata={"files": len(hashes), "new": len(added), "changed": len(changed)}
                | {"removed": len(removed)},
                tags=observation_tags(version),
            )
        )
    context.log.info(f"{len(added)} new, {len(changed)} changed, {len(removed)} removed")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=requests,
        asset_events=events,
        cursor=json.dumps({"listing": listing, "version": version}),
    )


def retrain_run_config() -> dict:
    preset = os.environ.get("XMLAI_RETRAIN_PRESET")
    if not preset:
        return {}
    return yaml.safe_load(Path(preset).read_text()) or {}


retrain_schedule = dg.ScheduleDefinition(
    name="retrain_schedule",
    job=retrain_job,
    cron_schedule=os.environ.get("XMLAI_RETRAIN_CRON", "0 3 * * 1"),
    execution_timezone=os.environ.get("XMLAI_RETRAIN_TIMEZONE", "UTC"),
    run_config_fn=lambda context: retrain_run_config(),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Rebuilds the master CSV, preprocessing, trained_model and placement_model from "
    "everything ingested so far (cron, timezone and preset from XMLAI_RETRAIN_CRON, "
    "XMLAI_RETRAIN_TIMEZONE, XMLAI_RETRAIN_PRESET).",
)
