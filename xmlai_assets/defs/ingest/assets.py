"""Ingest: timeline XML files → per-timeline frames → master_training_data.csv."""

import hashlib

import dagster as dg

from xmlai_assets.atomic import file_lock
from xmlai_assets.defs.metadata import OWNERS, column_schema
from xmlai_assets.defs.partitions import timeline_files
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.timeline.ingest import (
    PARSER_VERSION,
    build_master_csv,
    ingest_timeline_file,
    read_report,
)
from xmlai_assets.timeline.schema import COLUMNS
from xmlai_assets.timeline.tables import file_sha256

GROUP = "ingest"


class IngestConfig(dg.Config):
    sample_rate_hz: float = 10.0
    """Samples per second of timeline time in the frame tables."""


@dg.observable_source_asset(
    partitions_def=timeline_files,
    group_name=GROUP,
    owners=OWNERS,
    description="Timeline exports (FCP7 XML from Premiere Pro, Final Cut Pro 7 or DaVinci "
    "Resolve) in the watched folder; one partition per file, versioned by content hash.",
    metadata={"format": "xmeml (FCP7 XML)"},
    kinds={"xml"},
)
def timeline_xml(context: dg.AssetExecutionContext, paths: DataPaths) -> dg.DataVersionsByPartition:
    folder = paths.layout.timelines_dir
    keys = context.instance.get_dynamic_partitions(timeline_files.name)
    versions = {key: file_sha256(folder / key) for key in keys if (folder / key).is_file()}
    return dg.DataVersionsByPartition(versions)


@dg.asset(
    partitions_def=timeline_files,
    backfill_policy=dg.BackfillPolicy.single_run(),
    deps=[timeline_xml],
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"parser-{PARSER_VERSION}",
    description="One table per timeline: a row per sample time with the on-screen state, "
    "asset class, scale, position and crop of video tracks V1..V20 (Parquet).",
    kinds={"pandas", "parquet"},
)
def timeline_frames(
    context: dg.AssetExecutionContext, config: IngestConfig, paths: DataPaths
) -> dg.MaterializeResult:
    layout = paths.layout
    reports = [
        ingest_timeline_file(layout, key, sample_rate_hz=config.sample_rate_hz)
        for key in context.partition_keys
    ]
    ok = [r for r in reports if r["status"] == "ok"]
    failed = {r["file"]: r["reason"] for r in reports if r["status"] != "ok"}
    for r in ok:
        for dropped in r["timeline"]["dropped_tracks"]:
            context.log.warning(f"{r['file']}: track {dropped} beyond V20 is not in the frames")
    for name, reason in failed.items():
        context.log.error(f"{name}: left out: {reason}")
    # One materialization covers every partition of the run: its version hashes all of them.
    digest = hashlib.sha256()
    for r in reports:
        digest.update(f"{r['file']}\0{r.get('frames_sha256', r.get('reason'))}\n".encode())
    rows = dg.MetadataValue.table(
        records=[
            dg.TableRecord(
                {
                    "file": r["file"],
                    "status": r["status"],
                    "rows": r.get("rows", 0),
                    "fps": r["timeline"]["fps"] if r["status"] == "ok" else 0.0,
                    "video_tracks": r["timeline"]["n_video_tracks"] if r["status"] == "ok" else 0,
                    "dropped_tracks": ", ".join(r["timeline"]["dropped_tracks"])
                    if r["status"] == "ok"
                    else "",
                    "reason": r.get("reason", ""),
                }
            )
            for r in reports
        ],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("file", "string"),
                dg.TableColumn("status", "string"),
                dg.TableColumn("rows", "int"),
                dg.TableColumn("fps", "float"),
                dg.TableColumn("video_tracks", "int"),
                dg.TableColumn("dropped_tracks", "string"),
                dg.TableColumn("reason", "string"),
            ]
        ),
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": sum(r["rows"] for r in ok),
            "files_parsed": len(ok),
            "files_failed": len(failed),
            "failed_files": failed,
            "files": rows,
            "frames_dir": dg.MetadataValue.path(str(layout.frames_dir)),
        },
        data_version=dg.DataVersion(digest.hexdigest()[:32]),
    )


@dg.asset(
    deps=[timeline_frames],
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"parser-{PARSER_VERSION}",
    description="All timelines' frames in one CSV (183 columns: video_id, source_video_name, "
    "time, then active/asset/scale/x/y/crop_l/crop_r/crop_t/crop_b for V1..V20).",
    kinds={"csv"},
)
def master_training_data(
    context: dg.AssetExecutionContext, paths: DataPaths
) -> dg.MaterializeResult:
    layout = paths.layout
    keys = context.instance.get_dynamic_partitions(timeline_files.name)
    with file_lock(layout.lock_file("master_training_data")):
        summary = build_master_csv(layout, keys)
    for name in summary.missing:
        context.log.warning(f"{name}: no frames yet; materialize timeline_frames for it")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.rows,
            "dagster/column_schema": column_schema(),
            "column_count": len(COLUMNS),
            "video_count": len(summary.rows_per_video),
            "rows_per_video": summary.rows_per_video,
            "dropped_tracks": summary.dropped_tracks,
            "failed_files": summary.failed,
            "files_without_frames": summary.missing,
            "path": dg.MetadataValue.path(str(layout.master_csv)),
            "size_bytes": summary.size_bytes,
            "sha256": summary.sha256,
        },
        data_version=dg.DataVersion(summary.sha256[:32]),
    )


@dg.asset_check(
    asset=master_training_data,
    description="Every timeline file in the watched folder parsed; failures are listed with "
    "their reasons (a warning: the good files' rows are in the CSV either way).",
)
def all_timelines_parsed(
    context: dg.AssetCheckExecutionContext, paths: DataPaths
) -> dg.AssetCheckResult:
    keys = context.instance.get_dynamic_partitions(timeline_files.name)
    failed = {}
    for key in keys:
        report = read_report(paths.layout, key)
        if report is not None and report["status"] != "ok":
            failed[key] = report["reason"]
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed_files": failed, "files_checked": len(keys)},
    )
