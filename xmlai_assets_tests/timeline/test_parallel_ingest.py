"""Parsing in several processes: the same artifacts, byte for byte, as parsing in one; reports in
the order asked; one bad file fails alone; a dead worker loses no file."""

import json
import multiprocessing
import os
import signal

from xmlai_assets.paths import DataLayout
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline.ingest import (
    POOL_MIN_FILES,
    ingest_timeline_files,
    parse_workers,
)


def folder(tmp_path, name, n=12, seconds=4):
    layout = DataLayout.at(tmp_path / name)
    for seed in range(n):
        generate_timeline(seed, seconds=seconds, name=f"t{seed:02d}").write(layout.timelines_dir)
    (layout.timelines_dir / "broken.xml").write_text("<xmeml><sequence>")
    return layout


def artifacts(layout):
    """Each frames table's bytes, and each report less the XML file's modification time (the
    two folders' copies were written at different moments)."""
    out = {}
    for path in sorted(layout.local("frames").iterdir()):
        if path.suffix == ".json":
            out[path.name] = json.loads(path.read_text()) | {"xml_mtime_ns": None}
        else:
            out[path.name] = path.read_bytes()
    return out


def test_two_processes_write_the_same_bytes_as_one_and_report_in_order(tmp_path):
    serial, pooled = folder(tmp_path, "serial"), folder(tmp_path, "pooled")
    names = sorted(p.name for p in serial.timelines_dir.iterdir())
    one = list(ingest_timeline_files(serial, names, workers=1))
    two = list(ingest_timeline_files(pooled, names, workers=2))
    assert [r["file"] for r in two] == names
    assert [r["status"] for r in two] == [r["status"] for r in one]
    assert {r["file"]: r["status"] for r in two}["broken.xml"] == "failed"
    assert sum(r["status"] == "ok" for r in two) == len(names) - 1
    assert artifacts(pooled) == artifacts(serial)


def test_files_left_by_a_dead_worker_are_parsed_here(tmp_path, caplog):
    layout = folder(tmp_path, "data", n=80, seconds=30)
    names = sorted(p.name for p in layout.timelines_dir.iterdir())
    reports = ingest_timeline_files(layout, names, workers=2)
    first = next(reports)
    for child in multiprocessing.active_children():  # the pool's workers: killed
        os.kill(child.pid, signal.SIGKILL)
    rest = list(reports)
    assert [r["file"] for r in [first, *rest]] == names
    assert sum(r["status"] == "ok" for r in [first, *rest]) == len(names) - 1
    assert "a parsing process died" in caplog.text


def test_the_default_uses_a_pool_only_for_many_files():
    assert parse_workers(0, POOL_MIN_FILES - 1) == 1
    assert parse_workers(0, POOL_MIN_FILES) == len(os.sched_getaffinity(0))
    assert parse_workers(3, 2) == 3


def _workers_in_a_daemon(queue) -> None:
    queue.put((parse_workers(4, 1000), parse_workers(0, 1000)))


def test_a_daemonic_process_parses_in_itself_as_it_may_start_no_other():
    """A Celery worker's pool process is daemonic: a pool there would fail to start."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_workers_in_a_daemon, args=(queue,), daemon=True)
    child.start()
    assert queue.get(timeout=60) == (1, 1)
    child.join(30)
