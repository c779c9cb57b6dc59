"""Scale benchmark on the embedded profile, one run on one machine:

1. 1,100 synthetic timelines (ten times the corpus) parsed into frames tables in the calling
   process and in a pool of 2 processes (`ingest_timeline_files`, what the `timeline_frames`
   step runs), each into a fresh folder, then the master CSV and preprocessing once;
2. the file sensor at 10,000 files: a tick that finds them all new, a tick with nothing
   changed, and a tick after one file changed, with the cursor's size;
3. the same files on the cluster profile (PostgreSQL, Redis, S3, Celery, started here on
   loopback): `xmlai-assets run --no-train` with one Celery worker and one parse run, then with
   two workers and two parse runs (`--parse-runs`), each process parsing one file at a time;
4. the reports and frames tables of 2,000 files on that S3 server, as the sensor's changed
   tick and the master CSV read them: one after another, and together (`read_reports`,
   `ArtifactStore.reading_each`).

    .venv/bin/python bench/scale.py [--files 1100] [--sensor-files 10000] [--workers 2]
                                    [--report-files 2000] [--parts 1,2,3,4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import dagster as dg

from xmlai_assets.defs import automation
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.features.preprocess import preprocess
from xmlai_assets.paths import DataLayout, frames_parquet, frames_report, list_timeline_files
from xmlai_assets.synth import generate_timeline
from xmlai_assets.timeline.ingest import (
    build_master_csv,
    ingest_timeline_file,
    ingest_timeline_files,
    read_report,
    read_reports,
)


def write_corpus(folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in range(count):
        generate_timeline(seed).write(folder)


def parse_all(tmp: Path, timelines: Path, label: str, workers: int) -> tuple[float, DataLayout]:
    layout = DataLayout.at(tmp / label, timelines)
    names = list_timeline_files(timelines)
    t = time.perf_counter()
    reports = list(ingest_timeline_files(layout, names, workers=workers))
    seconds = time.perf_counter() - t
    failed = [r["file"] for r in reports if r["status"] != "ok"]
    assert not failed, failed
    return seconds, layout


def tick(instance, layout: DataLayout, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"paths": DataPaths(data_dir=str(layout.data_dir))},
    )
    t = time.perf_counter()
    result = automation.timeline_files_sensor(context)
    seconds = time.perf_counter() - t
    if isinstance(result, dg.SensorResult):
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        return seconds, result, result.cursor
    return seconds, result, cursor


def cluster_runs(tmp: Path, timelines: Path, counts: list[int]) -> dict[int, dict[str, float]]:
    """For each count of workers: the parse and the rest (master CSV to sequences) on a cluster
    of that many Celery workers, each run's parse in one process (`parse_workers: 1`)."""
    import yaml

    from xmlai_assets_tests.cluster import servers

    preset = tmp / "one_process_per_parse.yaml"
    preset.write_text(
        yaml.safe_dump({"ops": {"timeline_frames": {"config": {"parse_workers": 1}}}})
    )
    found = {}
    with (
        servers.postgres() as postgres_url,
        servers.redis(tmp) as redis_url,
        servers.s3(tmp) as s3_env,
    ):
        for count in counts:
            root = tmp / f"cluster-{count}"
            env = servers.cluster_env(root, postgres_url, redis_url, s3_env)
            env["XMLAI_TIMELINES_DIR"] = str(timelines)
            env["XMLAI_DATA_URL"] = f"s3://{servers.BUCKET}/bench-{count}-workers"
            with servers.celery_workers(env, root, count):
                since, t = time.time(), time.perf_counter()
                run = subprocess.run(
                    [sys.executable, "-m", "xmlai_assets.cli", "run", "--no-train",
                     "--preset", str(preset), "--parse-runs", str(count)],
                    env=env,
                    capture_output=True,
                    text=True,
                )  # fmt: skip
                total = time.perf_counter() - t
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
            found[count] = {"total": total, "parse": _parse_seconds(env, since)}
    return found


def _parse_seconds(env: dict[str, str], since: float) -> float:
    """Wall time from the first parse run's start to the last one's end, of the runs started
    after `since`, from the instance."""
    saved = {
        k: os.environ.get(k) for k in ("DAGSTER_HOME", "XMLAI_POSTGRES_URL", "XMLAI_S3_BUCKET")
    }
    os.environ.update({k: env[k] for k in saved})
    try:
        with dg.DagsterInstance.get() as instance:
            runs = [
                r
                for r in instance.get_run_records()
                if "dagster/asset_partition_range_start" in r.dagster_run.tags
                and r.start_time is not None
                and r.start_time >= since
            ]
            return max(r.end_time for r in runs) - min(r.start_time for r in runs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def embedded_parse(tmp: Path, timelines: Path, args) -> None:
    size = sum(p.stat().st_size for p in timelines.iterdir()) / 1e6
    print(f"\n1. {args.files} synthetic timelines ({size:.0f} MB of XML) into frames tables")
    one, _ = parse_all(tmp, timelines, "one", 1)
    many, layout = parse_all(tmp, timelines, "pool", args.workers)
    print(f"  in the calling process        {one:7.1f} s")
    print(f"  in {args.workers} processes                {many:7.1f} s")
    print(f"  speed-up                      {one / many:7.2f} x   (target >= 1.7x for 2)")
    t = time.perf_counter()
    summary = build_master_csv(layout, list_timeline_files(timelines))
    master = time.perf_counter() - t
    t = time.perf_counter()
    preprocess(layout)
    prep = time.perf_counter() - t
    print(f"  frames -> master CSV          {master:7.1f} s ({summary.rows:,} rows)")
    print(f"  master CSV -> sequences       {prep:7.1f} s")
    shutil.rmtree(tmp / "one")


def sensor_ticks(tmp: Path, args) -> None:
    print(f"\n2. the file sensor at {args.sensor_files:,} files")
    layout = DataLayout.at(tmp / "sensor")
    one_file = generate_timeline(0, seconds=5, name="f").write(tmp)
    data = Path(one_file).read_bytes()
    layout.timelines_dir.mkdir(parents=True)
    for i in range(args.sensor_files):
        (layout.timelines_dir / f"f{i:06d}.xml").write_bytes(data)
    names = list_timeline_files(layout.timelines_dir)
    t = time.perf_counter()
    list(ingest_timeline_files(layout, names, workers=args.workers))
    print(f"  parsing them ({args.workers} processes)      {time.perf_counter() - t:7.1f} s")
    with dg.instance_for_test() as instance:
        first, result, cursor = tick(instance, layout, None)
        print(
            f"  first tick (all new)          {first:7.2f} s, "
            f"{len(result.run_requests):,} run requests"
        )
        quiet, result, cursor = tick(instance, layout, cursor)
        print(f"  tick, nothing changed         {quiet:7.2f} s ({type(result).__name__})")
        changed = layout.timelines_dir / names[0]
        changed.write_bytes(data.replace(b"</xmeml>", b"<!-- edit --></xmeml>"))
        after, result, cursor = tick(instance, layout, cursor)
        print(
            f"  tick, one file changed        {after:7.2f} s, "
            f"{len(result.run_requests)} run request"
        )
        print(f"  cursor                        {len(cursor):7d} bytes")


def cluster_parse(tmp: Path, timelines: Path, args) -> None:
    print(f"\n3. the {args.files} timelines on the cluster profile (Celery workers, S3)")
    found = cluster_runs(tmp, timelines, [1, args.workers])
    for count, seconds in found.items():
        print(
            f"  {count} worker{'s' if count > 1 else ' '}: parse {seconds['parse']:7.1f} s, "
            f"whole run {seconds['total']:7.1f} s"
        )
    speed_up = found[1]["parse"] / found[args.workers]["parse"]
    print(
        f"  parse speed-up, {args.workers} workers      {speed_up:7.2f} x   (target >= 1.7x for 2)"
    )


def s3_reads(tmp: Path, args) -> None:
    from xmlai_assets_tests.cluster import servers

    count = args.report_files
    print(f"\n4. the reports and frames tables of {count:,} files on the S3 server (loopback)")
    local = DataLayout.at(tmp / "one-report")
    generate_timeline(0, seconds=5, name="f").write(local.timelines_dir)
    ingest_timeline_file(local, "f.xml")
    report = local.artifacts.read_bytes(frames_report("f.xml"))
    table = local.artifacts.read_bytes(frames_parquet("f.xml"))
    names = [f"f{i:06d}.xml" for i in range(count)]
    tables = [frames_parquet(name) for name in names]
    (tmp / "s3-reports").mkdir()
    with servers.s3(tmp / "s3-reports") as s3_env:
        os.environ.update(s3_env)
        layout = DataLayout.at(tmp / "s3", data_url=f"s3://{servers.BUCKET}/reports")
        store = layout.artifacts
        for name in names:
            store.write_bytes(frames_report(name), report.replace(b'"f.xml"', f'"{name}"'.encode()))
            store.write_bytes(frames_parquet(name), table)

        def fetch_in_turn() -> dict:
            with ExitStack() as copies:
                found = [copies.enter_context(store.reading(name)) for name in tables]
                return {name: path.read_bytes() for name, path in zip(tables, found, strict=True)}

        def fetch_together() -> dict:
            with store.reading_each(tables) as found:
                return {name: path.read_bytes() for name, path in found.items()}

        ways = {  # (what, how): read
            ("reports", "one after another"): lambda: {n: read_report(layout, n) for n in names},
            ("reports", "together"): lambda: read_reports(layout, names),
            ("frames tables", "one after another"): fetch_in_turn,
            ("frames tables", "together"): fetch_together,
        }
        best, found = dict.fromkeys(ways, float("inf")), {}
        for _ in range(3):  # interleaved: a slow spell of the machine hits all alike
            for way, read in ways.items():
                t = time.perf_counter()
                found[way] = read()
                best[way] = min(best[way], time.perf_counter() - t)
    for what in ("reports", "frames tables"):
        apart, together = (what, "one after another"), (what, "together")
        assert found[apart] == found[together] and all(found[together].values())
        print(f"  {what + ', one after another':<34}{best[apart]:7.2f} s")
        print(f"  {what + ', together':<34}{best[together]:7.2f} s")
        print(f"  {'one after another / together':<34}{best[apart] / best[together]:7.1f} x")
    print("  (a loopback round trip each here; an object store across a network has longer ones)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=1100)
    parser.add_argument("--sensor-files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--report-files", type=int, default=2000)
    parser.add_argument("--parts", default="1,2,3,4", help="which parts to run (default: all)")
    args = parser.parse_args()
    parts = {int(part) for part in args.parts.split(",")}
    print(f"{os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        timelines = tmp / "timelines"
        write_corpus(timelines, args.files)
        if 1 in parts:
            embedded_parse(tmp, timelines, args)
        if 2 in parts:
            sensor_ticks(tmp, args)
        if 3 in parts:
            cluster_parse(tmp, timelines, args)
        if 4 in parts:
            s3_reads(tmp, args)


if __name__ == "__main__":
    main()
