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

import json
import os
from pathlib import Path

import dagster as dg
import yaml

from xmlai_assets.defs.partitions import timeline_files, valid_partition_key
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.paths import list_timeline_files
from xmlai_assets.timeline.ingest import read_report
from xmlai_assets.timeline.tables import file_sha256

FRAMES = dg.AssetKey("timeline_frames")
MASTER = dg.AssetKey("master_training_data")

retrain_job = dg.define_asset_job(
    "retrain",
    selection=dg.AssetSelection.assets(MASTER).downstream(),
    description="The master CSV, preprocessing and a new model version from every timeline "
    "ingested so far, with all their checks.",
)


def _folder_state(folder: Path, previous: dict, seq: int) -> tuple[dict[str, list], int]:
    """({file: [size, mtime_ns, sha256, version]}, last version handed out).

    A file's hash is reused while its size and mtime hold. Each content not seen in the
    previous state gets a new version from a counter that only grows, so a file that changes
    back to an earlier content still gets a run key it never had.
    """
    state = {}
    for name in list_timeline_files(folder):
        try:
            stat = (folder / name).stat()
            known = previous.get(name)
            if known and known[:2] == [stat.st_size, stat.st_mtime_ns]:
                state[name] = known
                continue
            sha = file_sha256(folder / name)
        except OSError:
            continue  # gone between the listing and the read: the next tick sees it removed
        if known and known[2] == sha:
            state[name] = [stat.st_size, stat.st_mtime_ns, sha, known[3]]
        else:
            seq += 1
            state[name] = [stat.st_size, stat.st_mtime_ns, sha, seq]
    return state, seq


@dg.sensor(
    name="timeline_files_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    target=[FRAMES, MASTER],
    description="Watches the timelines folder: a partition for each new file, re-parsing for a "
    "changed one (content hash), removal for a file that is gone. Unchanged files are never "
    "parsed again.",
)
def timeline_files_sensor(context: dg.SensorEvaluationContext, paths: DataPaths) -> dg.SensorResult:
    folder = paths.layout.timelines_dir
    cursor = json.loads(context.cursor) if context.cursor else {}
    state, seq = _folder_state(folder, cursor.get("files", {}), cursor.get("seq", 0))
    skipped = sorted(name for name in state if not valid_partition_key(name))
    for name in skipped:
        context.log.warning(
            f"{folder / name}: a file name with '...' or control characters cannot be a "
            "partition; rename the file"
        )
        state.pop(name)
    known = set(context.instance.get_dynamic_partitions(timeline_files.name))
    added = sorted(set(state) - known)
    removed = sorted(known - set(state))
    # a known file is re-parsed only when its content differs from what its frames came from
    changed = sorted(
        name
        for name in state
        if name in known
        and (read_report(paths.layout, name) or {}).get("xml_sha256") != state[name][2]
    )
    runs = [
        dg.RunRequest(
            partition_key=name,
            asset_selection=[FRAMES],
            run_key=f"{name}:{state[name][3]}",
            tags={"xmlai/trigger": "new file" if name in added else "changed file"},
        )
        for name in added + changed
    ]
    if removed and not runs:
        # the master CSV must drop the rows of files that are gone
        seq += 1
        runs.append(dg.RunRequest(asset_selection=[MASTER], run_key=f"removed:{seq}"))
    requests = []
    if added:
        requests.append(timeline_files.build_add_request(added))
    if removed:
        requests.append(timeline_files.build_delete_request(removed))
    if added or removed or changed:
        context.log.info(f"{len(added)} new, {len(changed)} changed, {len(removed)} removed")
    return dg.SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=requests,
        cursor=json.dumps({"seq": seq, "files": state}, sort_keys=True),
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
    description="Rebuilds the master CSV, preprocessing and trained_model from everything "
    "ingested so far (cron, timezone and preset from XMLAI_RETRAIN_CRON, "
    "XMLAI_RETRAIN_TIMEZONE, XMLAI_RETRAIN_PRESET).",
)
