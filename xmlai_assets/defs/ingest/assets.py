"""Ingest: timeline XML files → per-timeline frames → master_training_data.csv."""

import os

import dagster as dg
import pydantic

from xmlai_assets.atomic import remove_stale_temp_files
from xmlai_assets.defs.metadata import (
    OWNERS,
    column_schema,
    csv_preview,
    observation_tags,
    rounded,
    table,
)
from xmlai_assets.defs.partitions import timeline_files
from xmlai_assets.defs.resources import MASTER_POOL, DataPaths
from xmlai_assets.paths import MASTER_CSV
from xmlai_assets.timeline.ingest import (
    PARSER_VERSION,
    POOL_MIN_FILES,
    build_master_csv,
    folder_version,
    ingest_timeline_files,
    parse_workers,
    read_reports,
)
from xmlai_assets.timeline.parser import DEFAULT_MAX_SECONDS
from xmlai_assets.timeline.schema import COLUMNS

GROUP = "ingest"
# Every asset made from the timelines depends on this one too: a new folder version then marks
# each of them stale in the UI (Dagster's staleness looks one level up, not further).
TIMELINE_XML = dg.AssetKey("timeline_xml")


class IngestConfig(dg.Config):
    sample_rate_hz: float = 10.0
    """Samples per second of timeline time in the frame tables."""
    max_hours: float = DEFAULT_MAX_SECONDS / 3600
    """The longest timeline accepted; a longer one is refused with its length, before any
    memory is taken for it."""
    parse_workers: int = pydantic.Field(
        default=0,
        ge=0,
        description="Processes that parse the run's files: 0, one per CPU core when there are "
        f"at least {POOL_MIN_FILES} files (else the step's own process); 1, the step's own "
        "process; N, N processes.",
    )


@dg.observable_source_asset(
    key=TIMELINE_XML,
    group_name=GROUP,
    owners=OWNERS,
    description="The watched folder of timeline exports (FCP7 XML from Premiere Pro, Final Cut "
    "Pro 7 or DaVinci Resolve). Its data version is a digest of every file's name and content "
    "hash, so a new, changed or removed file marks the master CSV and all after it stale. The "
    "sensor observes it whenever the folder changes; Observe does the same by hand.",
    metadata={"format": "xmeml (FCP7 XML)"},
    kinds={"xml"},
)
def timeline_xml(context: dg.AssetExecutionContext, paths: DataPaths) -> dg.DataVersion:
    folder = folder_version(paths.layout)
    context.log.info(f"{len(folder.hashes)} timeline files in {paths.layout.timelines_dir}")
    return dg.DataVersion(folder.version)


def frames_metadata(report: dict) -> dict[str, object]:
    """What one partition's materialization shows: that file's table, never the run's."""
    info = report["timeline"]
    return {
        "dagster/row_count": report["rows"],
        "fps": rounded(info["fps"]),
        "video_tracks": info["n_video_tracks"],
        "declared_duration_frames": info["declared_duration_frames"],
        "length_frames": info["length_frames"],
        "length_overridden": info["length_frames"] != info["declared_duration_frames"],
        "source_video_name": info["source_video_name"],
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in info["warnings"]) or "none"),
        "dropped_tracks": ", ".join(info["dropped_tracks"]) or "none",
        "xml_sha256": report["xml_sha256"],
        "frames_sha256": report["frames_sha256"],
    }


FILES_PER_RUN_ENV = "XMLAI_PARSE_FILES_PER_RUN"


def parse_backfill_policy() -> dg.BackfillPolicy:
    """How a backfill of `timeline_frames` is cut into runs: one run for all the files (the
    default: one process, no start-up per file), or with `XMLAI_PARSE_FILES_PER_RUN=N` one run
    per N files, which a cluster's workers take in parallel."""
    per_run = int(os.environ.get(FILES_PER_RUN_ENV) or 0)
    if per_run > 0:
        return dg.BackfillPolicy.multi_run(max_partitions_per_run=per_run)
    return dg.BackfillPolicy.single_run()


@dg.asset(
    partitions_def=timeline_files,
    backfill_policy=parse_backfill_policy(),
    deps=[TIMELINE_XML],
    output_required=False,
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"parser-{PARSER_VERSION}",
    description="One table per timeline: a row per sample time with the on-screen state, "
    "asset class, scale, position and crop of video tracks V1..V20 (Parquet). A file that "
    "cannot be read fails its own partition, with its reason; the others are materialized.",
    kinds={"pandas", "parquet"},
)
def timeline_frames(context: dg.AssetExecutionContext, config: IngestConfig, paths: DataPaths):
    layout = paths.layout
    frames_dir = layout.artifacts.local_path("frames")
    if frames_dir is not None and frames_dir.is_dir():
        remove_stale_temp_files(frames_dir)
    failed: dict[str, str] = {}
    keys = list(context.partition_keys)
    workers = parse_workers(config.parse_workers, len(keys))
    if workers > 1:
        context.log.info(f"parsing {len(keys)} files in {workers} processes")
    reports = ingest_timeline_files(
        layout,
        keys,
        workers=workers,
        sample_rate_hz=config.sample_rate_hz,
        max_seconds=config.max_hours * 3600,
    )
    for key, report in zip(keys, reports, strict=True):
        if report["status"] != "ok":
            failed[key] = report["reason"]
            context.log.error(f"{key}: not parsed: {report['reason']}")
            continue
        for warning in report["timeline"]["warnings"]:
            context.log.warning(f"{key}: {warning}")
        # One event per file, carrying that file's metadata only.
        yield dg.AssetMaterialization(
            asset_key=context.asset_key,
            partition=key,
            metadata=frames_metadata(report),
            tags=observation_tags(report["frames_sha256"]),
        )
    if failed:
        # The run fails, so Dagster marks exactly these partitions failed (red); every file
        # above is materialized already.
        raise dg.Failure(
            description=f"{len(failed)} of {len(context.partition_keys)} timeline files could "
            "not be parsed; every other file is materialized.",
            metadata={
                "failed_files": table(
                    [{"file": k, "reason": v} for k, v in sorted(failed.items())],
                    {"file": "string", "reason": "string"},
                )
            },
        )


@dg.asset(
    deps=[timeline_frames, TIMELINE_XML],
    pool=MASTER_POOL,
    group_name=GROUP,
    owners=OWNERS,
    code_version=f"parser-{PARSER_VERSION}",
    description="All timelines' frames in one CSV (183 columns: video_id, source_video_name, "
    "time, then active/asset/scale/x/y/crop_l/crop_r/crop_t/crop_b for V1..V20). Each frames "
    "table is checked against the hash recorded when it was written.",
    kinds={"csv"},
)
def master_training_data(
    context: dg.AssetExecutionContext, paths: DataPaths
) -> dg.MaterializeResult:
    layout = paths.layout
    keys = context.instance.get_dynamic_partitions(timeline_files.name)
    if (data_dir := layout.artifacts.local_path()) is not None and data_dir.is_dir():
        remove_stale_temp_files(data_dir, recursive=False)
    last = context.instance.get_latest_materialization_event(context.asset_key)
    previous = None
    if last is not None:
        recorded = last.asset_materialization.metadata
        if "inputs" in recorded and "sha256" in recorded:
            previous = {"inputs": recorded["inputs"].value, "sha256": recorded["sha256"].value}
    summary = build_master_csv(layout, keys, previous)
    if not summary.rewritten:
        context.log.info("the frames tables are the ones the CSV was made from: kept as it is")
    for name in summary.missing:
        context.log.warning(f"{name}: no frames yet; materialize timeline_frames for it")
    for name, reason in summary.failed.items():
        context.log.warning(f"{name}: left out: {reason}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": summary.rows,
            "dagster/column_schema": column_schema(),
            "preview": csv_preview(layout.artifacts, MASTER_CSV),
            "column_count": len(COLUMNS),
            "video_count": len(summary.rows_per_video),
            "rows_per_video": table(
                [{"video_id": v, "rows": n} for v, n in summary.rows_per_video.items()],
                {"video_id": "string", "rows": "int"},
            ),
            "dropped_tracks": summary.dropped_tracks,
            "failed_files": summary.failed,
            "files_without_frames": summary.missing,
            "path": dg.MetadataValue.path(layout.artifacts.location(MASTER_CSV)),
            "size_bytes": summary.size_bytes,
            "sha256": summary.sha256,
            "inputs": summary.inputs,
        },
        data_version=dg.DataVersion(summary.sha256[:32]),
    )


@dg.asset_check(
    asset=master_training_data,
    description="Every timeline file in the watched folder is in the master CSV; files that "
    "failed or were left out are listed with their reasons (a warning: the good files' rows "
    "are in the CSV either way).",
)
def all_timelines_parsed(
    context: dg.AssetCheckExecutionContext, paths: DataPaths
) -> dg.AssetCheckResult:
    keys = context.instance.get_dynamic_partitions(timeline_files.name)
    event = context.instance.get_latest_materialization_event(master_training_data.key)
    left_out = dict(event.asset_materialization.metadata["failed_files"].data) if event else {}
    for key, report in read_reports(paths.layout, keys).items():
        if report is None:
            left_out.setdefault(key, "not parsed yet")
        elif report["status"] != "ok":
            left_out[key] = report["reason"]
    return dg.AssetCheckResult(
        passed=not left_out,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"failed_files": left_out, "files_checked": len(keys)},
    )
