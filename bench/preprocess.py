"""Preprocess benchmark: master CSV → split → scalers → sequences (with the blocking checks) on
the 110-timeline corpus, once as Dagster assets and once as plain function calls, in one run.

Each variant runs in its own process so that its peak memory is its own; time is the best and
median of --repeat runs, memory the peak resident size above the process's size before the work.

    make bench            (or: .venv/bin/python bench/preprocess.py [--corpus DIR] [--repeat N])
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xmlai_assets.paths import (
    DEFAULT_DAGSTER_HOME,
    MASTER_CSV,
    DataLayout,
    list_timeline_files,
    sequences_npz,
    split_csv,
)


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def plain_run(layout: DataLayout):
    """The steps and checks the assets run, called directly."""
    from xmlai_assets.features.checks import master_problems, sequence_problems, split_problems
    from xmlai_assets.features.preprocess import preprocess
    from xmlai_assets.features.split import (
        DEFAULT_TEST_FRACTION,
        DEFAULT_VAL_FRACTION,
        SPLITS,
        read_video_ids,
    )
    from xmlai_assets.features.windows import read_npz

    def run() -> None:
        assert master_problems(layout.local(MASTER_CSV)) == []
        preprocess(layout)
        for split in SPLITS:
            seq = read_npz(layout.local(sequences_npz(split)))
            rows = read_video_ids(layout.local(split_csv(split)))
            assert sequence_problems(seq, rows, 100, 80) == []
            del seq
        ids = {s: read_npz(layout.local(sequences_npz(s)), ("video_ids",)) for s in SPLITS}
        fractions = (DEFAULT_VAL_FRACTION, DEFAULT_TEST_FRACTION)
        assert split_problems(ids, *fractions, 0) == []

    return run


def dagster_run(layout: DataLayout):
    """The same through Dagster: the preprocess assets and every check on the way, one run."""
    import dagster as dg

    from xmlai_assets.definitions import build_definitions
    from xmlai_assets.defs.preprocess.assets import GROUP as PREPROCESS
    from xmlai_assets.defs.resources import DataPaths

    base = build_definitions(DataPaths(data_dir=str(layout.data_dir)))
    selection = dg.AssetSelection.groups(PREPROCESS) | dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("master_training_data"), "master_data_valid")
    )
    defs = dg.Definitions.merge(
        base, dg.Definitions(jobs=[dg.define_asset_job("preprocess", selection=selection)])
    )
    job = defs.resolve_job_def("preprocess")
    # a SQLite instance on disk, as `make demo` and `dg dev` use, not an in-memory one
    instance = dg.DagsterInstance.local_temp(tempfile.mkdtemp(dir=layout.data_dir))
    record_master(instance, layout)

    def run() -> None:
        result = job.execute_in_process(instance=instance)
        assert result.success

    return run


def record_master(instance, layout: DataLayout) -> None:
    """The master CSV's materialization, whose recorded hash the split checks before reading."""
    import dagster as dg

    from xmlai_assets.timeline.tables import file_sha256

    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            "master_training_data", metadata={"sha256": file_sha256(layout.local(MASTER_CSV))}
        )
    )


def ui_run(layout: DataLayout):
    """As the UI launches a run: a fresh process loads the code location and executes the
    preprocess assets (and their checks) with the definitions' executor."""
    import os

    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    home = Path(tempfile.mkdtemp(dir=layout.data_dir))
    # the project's instance settings (pools, run monitoring), as `make ui` uses them
    shutil.copy(DEFAULT_DAGSTER_HOME / "dagster.yaml", home / "dagster.yaml")
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        record_master(instance, layout)
    env = {**os.environ, "DAGSTER_HOME": str(home), "XMLAI_DATA_DIR": str(layout.data_dir)}
    from xmlai_assets.defs.preprocess.assets import GROUP as PREPROCESS

    command = [sys.executable, "-m", "dagster", "asset", "materialize"]
    command += ["-m", "xmlai_assets.definitions", "--select", f"group:{PREPROCESS}"]

    def run() -> None:
        subprocess.run(command, env=env, check=True, capture_output=True)

    return run


EMPTY_DEFINITIONS = """
import dagster as dg


@dg.asset
def nothing() -> None:
    return None


defs = dg.Definitions(assets=[nothing])
"""


def empty_ui_run(layout: DataLayout):
    """Dagster's floor: a run of one asset that does nothing, launched as `ui_run` launches
    the preprocess group (a new process, the project's instance settings)."""
    import os

    home = Path(tempfile.mkdtemp(dir=layout.data_dir))
    shutil.copy(DEFAULT_DAGSTER_HOME / "dagster.yaml", home / "dagster.yaml")
    (home / "empty_definitions.py").write_text(EMPTY_DEFINITIONS)
    env = {**os.environ, "DAGSTER_HOME": str(home), "PYTHONPATH": str(home)}
    command = [sys.executable, "-m", "dagster", "asset", "materialize"]
    command += ["-m", "empty_definitions", "--select", "nothing"]

    def run() -> None:
        subprocess.run(command, env=env, check=True, capture_output=True)

    return run


def command_line_run(layout: DataLayout):
    """The plain function calls as a command line runs them: in a new process, imports
    included; the reference for a UI launch, which pays the same start."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from preprocess import plain_run; "
        "from xmlai_assets.paths import DataLayout; plain_run(DataLayout.at(sys.argv[2]))()"
    )
    command = [sys.executable, "-c", script, str(Path(__file__).parent), str(layout.data_dir)]

    def run() -> None:
        subprocess.run(command, check=True, capture_output=True)

    return run


VARIANTS = {
    "plain": plain_run,
    "dagster": dagster_run,
    "cli": command_line_run,
    "ui": ui_run,
    "empty": empty_ui_run,
}


def worker(variant: str, data_dir: Path, repeat: int) -> None:
    layout = DataLayout.at(data_dir)
    run = VARIANTS[variant](layout)
    # imported before the baseline is taken: the peak counts the work, not the libraries
    import numpy as np  # noqa: F401

    gc.collect()
    baseline = rss_bytes()
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    from xmlai_assets.features.split import SPLITS
    from xmlai_assets.features.windows import read_npz

    arrays = sum(read_npz(layout.local(sequences_npz(s))).nbytes for s in SPLITS)
    json.dump(
        {"times": times, "peak_delta": peak_rss_bytes() - baseline, "arrays": arrays}, sys.stdout
    )


def measure(variant: str, data_dir: Path, repeat: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", variant, "--data-dir", str(data_dir)]
        + ["--repeat", str(repeat)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        sys.exit(f"the {variant} variant failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--corpus", type=Path, help="folder of XML timelines (default: 110 made)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data_dir, args.repeat)
        return

    from xmlai_assets.synth import generate_timeline
    from xmlai_assets.timeline.ingest import build_master_csv, ingest_timeline_file

    with tempfile.TemporaryDirectory() as tmp:
        layout = DataLayout.at(tmp, args.corpus)
        if args.corpus is None:
            for seed in range(110):
                generate_timeline(seed).write(layout.timelines_dir)
        names = list_timeline_files(layout.timelines_dir)
        for name in names:
            ingest_timeline_file(layout, name)
        summary = build_master_csv(layout, names)
        print(
            f"master CSV: {len(summary.rows_per_video)} timelines, {summary.rows} rows, "
            f"{summary.size_bytes / 1e6:.1f} MB; {args.repeat} runs per variant"
        )
        results = {v: measure(v, layout.data_dir, args.repeat) for v in VARIANTS}

    arrays = results["plain"]["arrays"]
    print(f"sequence arrays written: {arrays / 1e6:.1f} MB (train, val and test)")
    print(f"{'':26}{'best':>9}{'median':>9}{'peak memory':>14}{'/ arrays':>10}")
    for variant, label in (("plain", "plain functions"), ("dagster", "Dagster assets + checks")):
        r = results[variant]
        print(
            f"  {label:24}{min(r['times']):8.2f}s{statistics.median(r['times']):8.2f}s"
            f"{r['peak_delta'] / 1e6:11.0f} MB{r['peak_delta'] / arrays:9.2f}x"
        )
    plain, dagster = results["plain"]["times"], results["dagster"]["times"]
    print(
        f"  Dagster / plain         {min(dagster) / min(plain):8.2f}x"
        f"{statistics.median(dagster) / statistics.median(plain):8.2f}x"
        "   (target <= 1.5x; peak memory target <= 3x the arrays)"
    )
    ui, cli = results["ui"]["times"], results["cli"]["times"]
    print(
        f"  plain, from a command   {min(cli):8.2f}s{statistics.median(cli):8.2f}s"
        "   (a new process imports the libraries, then runs)"
    )
    print(
        f"  as the UI launches it   {min(ui):8.2f}s{statistics.median(ui):8.2f}s"
        "   (a new process loads the code location, then runs)"
    )
    print(
        f"  UI launch / plain       {min(ui) / min(plain):8.2f}x"
        f"{statistics.median(ui) / statistics.median(plain):8.2f}x   (target <= 1.5x)"
    )
    print(
        f"  UI launch / command     {min(ui) / min(cli):8.2f}x"
        f"{statistics.median(ui) / statistics.median(cli):8.2f}x"
    )
    empty = results["empty"]["times"]
    print(
        f"  an empty run, launched  {min(empty):8.2f}s{statistics.median(empty):8.2f}s"
        "   (one asset that does nothing: Dagster's own start, the floor of any UI run)"
    )
    print(
        f"  (UI launch - empty) / plain{(min(ui) - min(empty)) / min(plain):5.2f}x"
        f"{(statistics.median(ui) - statistics.median(empty)) / statistics.median(plain):8.2f}x"
        "   (what the run adds above the floor)"
    )


if __name__ == "__main__":
    main()
