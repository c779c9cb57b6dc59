"""Timeline files → per-timeline frame tables → the master CSV, with a report per file."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from xmlai_assets.atomic import atomic_write_bytes
from xmlai_assets.paths import DataLayout
from xmlai_assets.timeline.parser import parse_timeline_with_info
from xmlai_assets.timeline.tables import (
    concat_frames,
    file_sha256,
    read_frames,
    write_csv,
    write_frames,
)
from xmlai_assets.timeline.xml import TimelineError

log = logging.getLogger(__name__)

# Bump when a change to parsing changes the frames it produces.
PARSER_VERSION = "2"


def _write_report(path: Path, report: dict) -> None:
    atomic_write_bytes(path, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode())


def ingest_timeline_file(layout: DataLayout, name: str, *, sample_rate_hz: float = 10.0) -> dict:
    """Parse one timeline file into its frames table; return (and store) a report of the result.

    A file that cannot be parsed leaves no frames behind (a stale table from an earlier
    version of the file is removed) and a report with the reason.
    """
    source = layout.timelines_dir / name
    report: dict = {
        "file": name,
        "sample_rate_hz": sample_rate_hz,
        "parser_version": PARSER_VERSION,
    }
    try:
        xml_sha = file_sha256(source)
        report["xml_sha256"] = xml_sha
        df, info = parse_timeline_with_info(source, sample_rate_hz=sample_rate_hz)
    except (TimelineError, OSError) as exc:
        reason = exc.reason if isinstance(exc, TimelineError) else f"cannot read file ({exc})"
        log.warning("%s: %s", source, reason)
        layout.frames_file(name).unlink(missing_ok=True)
        report.update(status="failed", reason=reason)
        _write_report(layout.frames_report(name), report)
        return report
    write_frames(df, layout.frames_file(name))
    for warning in info.warnings:
        log.warning("%s: %s", source, warning)
    report.update(
        status="ok",
        rows=len(df),
        frames_sha256=file_sha256(layout.frames_file(name)),
        timeline=info.as_dict(),
    )
    _write_report(layout.frames_report(name), report)
    return report


def read_report(layout: DataLayout, name: str) -> dict | None:
    path = layout.frames_report(name)
    return json.loads(path.read_text()) if path.exists() else None


@dataclass
class MasterSummary:
    """What went into the master CSV, and what was left out and why."""

    rows: int
    rows_per_video: dict[str, int]
    failed: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    dropped_tracks: dict[str, list[str]] = field(default_factory=dict)
    sha256: str = ""
    size_bytes: int = 0


def build_master_csv(layout: DataLayout, names: list[str]) -> MasterSummary:
    """Concatenate the frames of `names` (in sorted order) into the master CSV, atomically."""
    tables: list[pa.Table] = []
    summary = MasterSummary(rows=0, rows_per_video={})
    for name in sorted(names):
        report = read_report(layout, name)
        frames = layout.frames_file(name)
        if report is None or (report["status"] == "ok" and not frames.exists()):
            summary.missing.append(name)
            continue
        if report["status"] != "ok":
            summary.failed[name] = report["reason"]
            continue
        table = read_frames(frames)
        tables.append(table)
        summary.rows_per_video[report["timeline"]["video_id"]] = table.num_rows
        if report["timeline"]["dropped_tracks"]:
            summary.dropped_tracks[name] = report["timeline"]["dropped_tracks"]
    master = concat_frames(tables)
    write_csv(master, layout.master_csv)
    summary.rows = master.num_rows
    summary.sha256 = file_sha256(layout.master_csv)
    summary.size_bytes = layout.master_csv.stat().st_size
    return summary
