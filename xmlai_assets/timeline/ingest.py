"""Timeline files → per-timeline frame tables → the master CSV, with a report per file."""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from xmlai_assets.paths import (
    MASTER_CSV,
    DataLayout,
    UnsafeTimelineKey,
    frames_parquet,
    frames_report,
    list_timeline_files,
)
from xmlai_assets.timeline.parser import DEFAULT_MAX_SECONDS, parse_timeline_with_info
from xmlai_assets.timeline.tables import (
    concat_frames,
    file_sha256,
    read_frames,
    write_csv,
    write_frames,
)
from xmlai_assets.timeline.xml import TimelineError, read_timeline_bytes

log = logging.getLogger(__name__)

# Bump when a change to parsing changes the frames it produces.
PARSER_VERSION = "2"


def _write_report(layout: DataLayout, name: str, report: dict) -> None:
    text = (json.dumps(report, indent=1, sort_keys=True) + "\n").encode()
    layout.artifacts.write_bytes(frames_report(name), text)


def ingest_timeline_file(
    layout: DataLayout,
    name: str,
    *,
    sample_rate_hz: float = 10.0,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> dict:
    """Parse one timeline file into its frames table; return (and store) a report of the result.

    Whatever goes wrong with one file (an unsafe name, a file that is not regular, bad XML,
    absurd numbers, out-of-range values, memory, the disk) is that file's failure, with its
    reason in the report; the caller goes on with the next file. A failed file leaves no frames
    behind (a table from an earlier version of the file is removed).
    """
    previous = read_report(layout, name) or {}
    report: dict = {
        "file": name,
        "sample_rate_hz": sample_rate_hz,
        "parser_version": PARSER_VERSION,
        # how many times this file was parsed: the sensor's run keys count on it
        "generation": previous.get("generation", 0) + 1,
    }
    try:
        source = layout.timeline_file(name)
        st = source.stat()
        report.update(xml_size=st.st_size, xml_mtime_ns=st.st_mtime_ns)
        data = read_timeline_bytes(source)
        report["xml_sha256"] = hashlib.sha256(data).hexdigest()
        df, info = parse_timeline_with_info(
            source, sample_rate_hz=sample_rate_hz, max_seconds=max_seconds, data=data
        )
        del data
        with layout.artifacts.writing(frames_parquet(name)) as tmp:
            write_frames(df, tmp)
            frames_sha256 = file_sha256(tmp)
    except Exception as exc:  # noqa: BLE001 - one file's failure of any kind is reported
        reason = failure_reason(exc)
        log.warning("%s: %s", name, reason)
        try:
            layout.artifacts.delete(frames_parquet(name))
            report.update(status="failed", reason=reason)
            _write_report(layout, name, report)
        except OSError as exc2:  # e.g. the disk is full: the report says so where it can
            log.error("%s: cannot record the failure (%s)", name, exc2)
            report.update(status="failed", reason=f"{reason}; report not written ({exc2})")
        return report
    for warning in info.warnings:
        log.warning("%s: %s", name, warning)
    report.update(
        status="ok",
        rows=len(df),
        frames_sha256=frames_sha256,
        timeline=info.as_dict(),
    )
    _write_report(layout, name, report)
    return report


# Below this many files a pool of spawned processes (about 2.5 s to start on 2 cores) costs
# more than it saves: see bench/scale.py and docs/benchmarks.md.
POOL_MIN_FILES = 200


def parse_workers(requested: int, n_files: int) -> int:
    """Processes to parse `n_files` with: `requested`, or with 0 one per CPU core this process
    may use when there are at least POOL_MIN_FILES files, else 1 (the calling process). A
    daemonic process (a Celery worker's) may start no process: 1 there, whatever is asked."""
    if multiprocessing.current_process().daemon:
        if requested > 1:
            log.warning("this process may not start others (a Celery worker's): parsing here")
        return 1
    if requested > 0:
        return requested
    if n_files < POOL_MIN_FILES:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


def ingest_timeline_files(
    layout: DataLayout,
    names: list[str],
    *,
    workers: int = 1,
    sample_rate_hz: float = 10.0,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> Iterator[dict]:
    """`ingest_timeline_file` for each name, in `workers` processes, yielding the reports in the
    order of `names`. Each file's artifacts are its own, so the outputs are the same bytes
    whatever the number of workers. Should a worker process die (the pool breaks), the files
    not yet reported are parsed in this process, each as its own failure or success."""
    parse = partial(
        ingest_timeline_file, layout, sample_rate_hz=sample_rate_hz, max_seconds=max_seconds
    )
    if workers <= 1 or len(names) < 2:
        yield from map(parse, names)
        return
    done = 0
    # spawn: a fork of a process with threads (Dagster's) can deadlock in the child
    context = multiprocessing.get_context("spawn")
    try:
        with ProcessPoolExecutor(min(workers, len(names)), mp_context=context) as pool:
            chunk = max(1, min(16, len(names) // (4 * workers)))
            for report in pool.map(parse, names, chunksize=chunk):
                done += 1
                yield report
    except BrokenProcessPool:
        log.warning("a parsing process died; parsing the %d files left here", len(names) - done)
        yield from map(parse, names[done:])


def failure_reason(exc: BaseException) -> str:
    """What went wrong, in words that name no path outside the file itself."""
    if isinstance(exc, (TimelineError, UnsafeTimelineKey)):
        return exc.reason
    if isinstance(exc, MemoryError):
        return "out of memory while reading the timeline"
    if isinstance(exc, OSError):
        return f"cannot read or write ({exc.strerror or type(exc).__name__})"
    return f"{type(exc).__name__}: {exc}"[:300]


def is_current(report: dict | None, xml_sha256: str | None) -> bool:
    """Whether a report (ok or failed) comes from this content and this parser version."""
    return (
        report is not None
        and report.get("parser_version") == PARSER_VERSION
        and report.get("xml_sha256") == xml_sha256
    )


def read_report(layout: DataLayout, name: str) -> dict | None:
    """The report of `name`'s last parse; None where there is none, or none that can be read."""
    return read_reports(layout, [name])[name]


def read_reports(layout: DataLayout, names: Iterable[str]) -> dict[str, dict | None]:
    """`read_report` of each name, read together (`ArtifactStore.read_each`)."""
    reports = {name: frames_report(name) for name in names}
    found = layout.artifacts.read_each(reports.values())
    return {name: _report(name, found[report]) for name, report in reports.items()}


def _report(name: str, data: bytes | OSError) -> dict | None:
    if isinstance(data, OSError):
        return None  # none, or one that cannot be read: the file is parsed again
    try:
        report = json.loads(data)
    except ValueError:
        return None  # a damaged report counts as none
    return report if isinstance(report, dict) and report.get("file") == name else None


@dataclass
class FolderState:
    """The watched folder as the pipeline sees it."""

    version: str  # a digest of every file's name and content hash
    hashes: dict[str, str]  # file name -> sha256 of its content
    reports: dict[str, dict | None]  # file name -> the report of its last parse, if any

    def needs_parse(self, name: str) -> bool:
        """Whether a file has no report of this content and this parser version."""
        return not is_current(self.reports.get(name), self.hashes.get(name))


def folder_version(layout: DataLayout) -> FolderState:
    """The watched folder's files, their content hashes and their reports (each read once). A
    file whose size and modification time match its report is not read again; any other is
    hashed."""
    hashes = {}
    reports = read_reports(layout, list_timeline_files(layout.timelines_dir))
    for name, report in reports.items():
        try:
            st = (layout.timelines_dir / name).stat()
            known = report or {}
            if [known.get("xml_size"), known.get("xml_mtime_ns")] == [st.st_size, st.st_mtime_ns]:
                hashes[name] = known["xml_sha256"]
            else:
                hashes[name] = file_sha256(layout.timelines_dir / name)
        except (OSError, KeyError):
            continue  # gone, or no longer a regular file: it is not in the folder's version
    digest = hashlib.sha256()
    for name, sha in sorted(hashes.items()):
        digest.update(f"{name}\0{sha}\n".encode("utf-8", "surrogateescape"))
    return FolderState(digest.hexdigest()[:32], hashes, reports)


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
    inputs: str = ""  # digest of the frames tables it was made from
    rewritten: bool = True


def build_master_csv(
    layout: DataLayout, names: list[str], previous: dict[str, str] | None = None
) -> MasterSummary:
    """Concatenate the frames of `names` (in sorted order) into the master CSV, atomically.

    Each frames table must still hash to what its report recorded; a table that does not, or
    whose video id another file already uses (names that differ only by case), is left out
    with its reason. When the tables are the ones `previous` (the last build's `inputs` and
    `sha256`) was made from and the CSV on disk still has that hash, it is not written again.
    """
    summary = MasterSummary(rows=0, rows_per_video={})
    store = layout.artifacts
    owners: dict[str, str] = {}  # case-folded video id -> the file that has it
    included: dict[str, Path] = {}  # file name -> its frames table, read once (a local file)
    inputs = hashlib.sha256()
    reports = read_reports(layout, sorted(names))
    ok = [frames_parquet(name) for name, r in reports.items() if r and r["status"] == "ok"]
    with store.reading_each(ok) as tables:  # local files, fetched together from a remote store
        for name, report in reports.items():
            if report is not None and report["status"] == "ok":
                frames = tables[frames_parquet(name)]
                if isinstance(frames, FileNotFoundError):
                    report = None
            if report is None:
                summary.missing.append(name)
                continue
            if report["status"] != "ok":
                summary.failed[name] = report["reason"]
                continue
            video_id = report["timeline"]["video_id"]
            twin = owners.get(video_id.casefold())
            if twin is not None:
                summary.failed[name] = (
                    f"video id {video_id!r} is already taken by {twin!r} (the names differ "
                    "only by case or extension); rename one of them"
                )
                continue
            if file_sha256(frames) != report["frames_sha256"]:
                summary.failed[name] = (
                    "its frames table changed since it was written; parse it again"
                )
                continue
            owners[video_id.casefold()] = name
            included[name] = frames
            inputs.update(f"{name}\0{report['frames_sha256']}\n".encode("utf-8", "surrogateescape"))
            summary.rows_per_video[video_id] = report["rows"]
            if report["timeline"]["dropped_tracks"]:
                summary.dropped_tracks[name] = report["timeline"]["dropped_tracks"]
        summary.inputs = inputs.hexdigest()
        summary.rows = sum(summary.rows_per_video.values())
        unchanged = (
            previous is not None
            and previous.get("inputs") == summary.inputs
            and store.exists(MASTER_CSV)
            and (on_disk := store.sha256(MASTER_CSV)) == previous.get("sha256")
        )
        if not unchanged:
            master = concat_frames(read_frames(path) for path in included.values())
            with store.writing(MASTER_CSV) as tmp:
                write_csv(master, tmp)
                on_disk = file_sha256(tmp)
            del master
    summary.rewritten = not unchanged
    summary.sha256 = on_disk
    summary.size_bytes = store.size(MASTER_CSV)
    return summary
