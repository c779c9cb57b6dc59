"""Ingest benchmark: parse_timeline against a bare lxml parse and OpenTimelineIO's FCP7 reader,
then a 110-timeline synthetic corpus through frames to the master CSV. One run, ratios printed.

    make bench            (or: .venv/bin/python bench/ingest.py [--external DIR] [--corpus DIR])
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from lxml import etree

from xmlai_assets.paths import PROJECT_ROOT, DataLayout, list_timeline_files
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline import parse_timeline
from xmlai_assets.timeline.ingest import build_master_csv, ingest_timeline_file
from xmlai_assets.timeline.xml import read_xmeml

EXTERNAL = PROJECT_ROOT.parent / "shared" / "external_xml"


def best_of(fn, repeat: int) -> tuple[float, float]:
    """(best, median) wall time of `repeat` calls."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def otio_reader():
    try:
        import opentimelineio as otio
    except ImportError:
        return None
    return lambda path: otio.adapters.read_from_file(str(path), adapter_name="fcp_xml")


def bench_file(path: Path, repeat: int) -> None:
    print(f"\n{path.name} ({path.stat().st_size / 1e6:.1f} MB)")
    # the faster of two bare parses: lxml reading the file, or parsing its bytes
    bare_file, bare_file_med = best_of(lambda: etree.parse(str(path)), repeat)
    bare_bytes, bare_bytes_med = best_of(lambda: etree.fromstring(path.read_bytes()), repeat)
    bare, bare_med = min((bare_file, bare_file_med), (bare_bytes, bare_bytes_med))
    hardened, _ = best_of(lambda: read_xmeml(path), repeat)
    ours, ours_med = best_of(lambda: parse_timeline(path), repeat)
    print(
        f"  bare lxml parse (file)     {bare_file * 1e3:8.1f} ms (median {bare_file_med * 1e3:.1f})"
    )
    print(
        f"  bare lxml parse (bytes)    {bare_bytes * 1e3:8.1f} ms (median {bare_bytes_med * 1e3:.1f})"
    )
    print(f"  hardened lxml parse        {hardened * 1e3:8.1f} ms")
    print(f"  parse_timeline (10 Hz)     {ours * 1e3:8.1f} ms (median {ours_med * 1e3:.1f})")
    print(
        f"  parse_timeline / bare lxml {ours / bare:8.2f} x best, {ours_med / bare_med:.2f} x median"
        "   (target <= 3x)"
    )
    read = otio_reader()
    if read is None:
        print("  OpenTimelineIO not installed (pip install opentimelineio otio-fcp-adapter)")
        return
    theirs, theirs_med = best_of(lambda: read(path), max(3, repeat // 5))
    print(f"  OpenTimelineIO fcp_xml     {theirs * 1e3:8.1f} ms (median {theirs_med * 1e3:.1f})")
    print(
        f"  OpenTimelineIO / ours      {theirs / ours:8.1f} x best, {theirs_med / ours_med:.1f} x median"
        "   (target >= 20x)"
    )


def bench_corpus(folder: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        layout = DataLayout.at(tmp, folder)
        if folder is None:
            t = time.perf_counter()
            for seed in range(110):
                generate_timeline(seed).write(layout.timelines_dir)
            print(f"\ncorpus: wrote 110 synthetic timelines in {time.perf_counter() - t:.1f} s")
        names = list_timeline_files(layout.timelines_dir)
        t = time.perf_counter()
        for name in names:
            ingest_timeline_file(layout, name)
        parse_s = time.perf_counter() - t
        t = time.perf_counter()
        summary = build_master_csv(layout, names)
        master_s = time.perf_counter() - t
        size = layout.master_csv.stat().st_size
        print(f"corpus: {len(names)} timelines, {summary.rows} rows, CSV {size / 1e6:.1f} MB")
        print(
            f"  XML -> frames (Parquet)    {parse_s:8.2f} s ({parse_s / len(names) * 1e3:.1f} ms a file)"
        )
        print(f"  frames -> master CSV       {master_s:8.2f} s")
        print(f"  total                      {parse_s + master_s:8.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--external", type=Path, default=EXTERNAL)
    parser.add_argument("--corpus", type=Path, help="an existing corpus folder (default: generate)")
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    prg6 = args.external / "Adobe Premiere CC Prg6.xml"
    if prg6.exists():
        bench_file(prg6, args.repeat)
    else:
        print(f"{prg6} not found: skipping the single-file comparison")
    bench_corpus(args.corpus)


if __name__ == "__main__":
    main()
