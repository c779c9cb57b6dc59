"""Command line: run the pipeline on a data folder, or write a synthetic corpus."""

from __future__ import annotations

import argparse
import fcntl
import math
import multiprocessing
import os
import socket
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from xmlai_assets.paths import DEFAULT_DAGSTER_HOME, DataLayout


def _instance():
    """The persistent instance that `dg dev` shows, created and migrated once: a process that
    finds it new does so holding a lock, so concurrent first starts (`make ui` and `make demo`
    together) never race to create its tables."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DAGSTER_HOME)))
    home.mkdir(parents=True, exist_ok=True)
    import dagster as dg

    # The instance's SQLite files live on this machine, so a local file lock is the right guard
    # for creating them (a cluster's Postgres instance is migrated once, by its operator).
    with open(home / ".instance.lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        instance = dg.DagsterInstance.get()
        # touch every storage, so each creates its tables now, under the lock
        instance.get_runs(limit=1)
        instance.get_dynamic_partitions("timeline_files")
        instance.all_instigator_state()
        instance.event_log_storage.get_asset_records()
        limit_writer_pools(instance)
    fail_orphaned_runs(instance)
    return instance


def limit_writer_pools(instance) -> None:
    """One slot in each pool that guards a shared artifact (unless one was set already)."""
    from xmlai_assets.defs.resources import WRITER_POOLS

    storage = instance.event_log_storage
    limited = storage.get_concurrency_keys()
    for pool in WRITER_POOLS:
        if pool not in limited:
            storage.set_concurrency_slots(pool, 1)


def run_tags() -> dict[str, str]:
    """Tags of a command-line run: which process on which host runs it."""
    return {"xmlai/host": socket.gethostname(), "xmlai/pid": str(os.getpid())}


def fail_orphaned_runs(instance) -> list[str]:
    """Mark failed the command-line runs of this host whose process is gone (killed, or the
    machine restarted), which would otherwise show as started forever; return their ids."""
    import dagster as dg

    from xmlai_assets.atomic import process_alive

    orphaned = []
    statuses = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING]
    runs = instance.get_runs(
        filters=dg.RunsFilter(statuses=statuses, tags={"xmlai/host": socket.gethostname()})
    )
    for run in runs:
        pid = int(run.tags.get("xmlai/pid", "0"))
        if pid and pid != os.getpid() and not process_alive(pid):
            instance.report_run_failed(run, f"the process that ran it ({pid}) is gone")
            instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            orphaned.append(run.run_id)
    return orphaned


# The run log at INFO: what each step did, without Dagster's per-event DEBUG lines.
QUIET = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def files_to_parse(layout: DataLayout, keys: list[str]) -> list[str]:
    """The partitions whose frames are missing, or were made from other content or by another
    parser version: a rerun with nothing changed parses nothing."""
    from xmlai_assets.timeline.ingest import folder_version

    folder = folder_version(layout)
    return [key for key in keys if folder.needs_parse(key)]


def contiguous_ranges(
    keys: list[str], wanted: list[str], max_size: int | None = None
) -> list[tuple[str, str]]:
    """The partition ranges (first, last) of `keys`, in their order, that hold exactly the
    `wanted` keys, each at most `max_size` keys long: one run each."""
    wanted_set, ranges, start, size = set(wanted), [], None, 0
    for i, key in enumerate(keys):
        if key in wanted_set and start is None:
            start, size = key, 0
        if start is None:
            continue
        size += 1
        if i + 1 == len(keys) or keys[i + 1] not in wanted_set or size == max_size:
            ranges.append((start, key))
            start = None
    return ranges


def _execute(defs, instance, *, asset_selection, run_config, tags):
    """Run the asset job on `asset_selection`; (success, the run's events).

    With the default executor the run is this process. With a cluster executor
    (XMLAI_EXECUTOR) this process only orchestrates: the steps go to the workers, which load
    the code location from its module as the webserver does, with their own XMLAI_* settings.
    """
    import dagster as dg

    from xmlai_assets.defs.executors import runs_in_process

    job_def = defs.resolve_implicit_global_asset_job_def()
    if runs_in_process():
        result = job_def.execute_in_process(
            instance=instance,
            asset_selection=asset_selection,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        )
        return result.success, result.all_events
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    repository = ReconstructableRepository.for_module("xmlai_assets.definitions", "defs")
    with dg.execute_job(
        repository.get_reconstructable_job(job_def.name),
        instance,
        run_config=run_config,
        tags=tags,
        asset_selection=asset_selection,
    ) as result:
        return result.success, result.all_events


def _parse_range(first: str, last: str, run_config: dict, defs=None, instance=None) -> bool:
    """Parse the files of one partition range in one run (in a process of its own when `defs`
    and `instance` are not given: the code location and the instance from the environment)."""
    import dagster as dg

    if defs is None:
        from xmlai_assets.definitions import build_definitions

        defs, instance = build_definitions(), dg.DagsterInstance.get()
    success, _ = _execute(
        defs,
        instance,
        asset_selection=[dg.AssetKey("timeline_frames")],
        run_config=run_config,
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
            **run_tags(),
        },
    )
    return success


def run_pipeline(
    layout: DataLayout,
    instance,
    run_config: dict | None = None,
    *,
    train: bool = True,
    ingest_only: bool = False,
    parse_runs: int = 1,
) -> bool:
    """Register the folder's timeline files as partitions, parse the new and changed ones (in
    one run where they are contiguous), observe the folder, then materialize the master CSV and
    all that follows from it. A file that fails to parse fails its own partition; the rest go on.
    Returns whether the master and everything after it succeeded."""
    import dagster as dg

    from xmlai_assets.definitions import build_definitions
    from xmlai_assets.defs.executors import EXECUTOR_ENV, executor_kind, runs_in_process
    from xmlai_assets.defs.ingest.assets import TIMELINE_XML
    from xmlai_assets.defs.metadata import observation_tags
    from xmlai_assets.defs.partitions import sync_timeline_partitions, timeline_files
    from xmlai_assets.defs.resources import DataPaths
    from xmlai_assets.timeline.ingest import folder_version

    if not runs_in_process() and layout != DataLayout.from_env():
        # the workers load the code location with their own settings, not this process's
        raise ValueError(
            f"with {EXECUTOR_ENV}={executor_kind()} the workers read where the data "
            "is from their XMLAI_* variables: set those instead of --data-dir or --timelines-dir"
        )
    defs = build_definitions(DataPaths.of(layout))
    fail_orphaned_runs(instance)  # a killed run's pool slots are free before this one waits
    added, removed = sync_timeline_partitions(instance, layout.timelines_dir)
    keys = instance.get_dynamic_partitions(timeline_files.name)
    todo = files_to_parse(layout, keys)
    print(
        f"timelines in {layout.timelines_dir}: {len(keys)} files, {len(added)} new, "
        f"{len(removed)} removed, {len(todo)} to parse"
    )

    # `parse_runs` runs, each with its share of the files. On a cluster executor they run at
    # once, each orchestrated by a process of its own, and each run's parse step goes to a
    # worker of its own.
    ranges = contiguous_ranges(keys, todo, max(1, math.ceil(len(todo) / max(1, parse_runs))))
    # the preset's settings of the parse step apply to the parse runs
    ingest = (run_config or {}).get("ops", {}).get("timeline_frames")
    parse_config = {**QUIET, **({"ops": {"timeline_frames": ingest}} if ingest else {})}
    if runs_in_process() or len(ranges) < 2:
        for first, last in ranges:
            _parse_range(first, last, parse_config, defs, instance)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(len(ranges), mp_context=context) as pool:
            firsts, lasts = zip(*ranges, strict=True)
            list(pool.map(_parse_range, firsts, lasts, [parse_config] * len(ranges)))
    folder = folder_version(layout)
    instance.report_runless_asset_event(
        dg.AssetObservation(
            asset_key=TIMELINE_XML,
            metadata={"files": len(folder.hashes)},
            tags=observation_tags(folder.version),
        )
    )
    failed = {}
    for key, report in folder.reports.items():
        if report is not None and report["status"] != "ok":
            failed[key] = report["reason"]
    for key, reason in sorted(failed.items()):
        print(f"  not parsed: {key}: {reason}")
    master = dg.AssetKey("master_training_data")
    selection = dg.AssetSelection.assets(master).downstream().materializable()
    if not train:
        selection = selection - dg.AssetSelection.groups("train")
    if ingest_only:
        selection = dg.AssetSelection.assets(master)
    downstream = selection.resolve(defs.resolve_asset_graph())
    success, events = _execute(
        defs,
        instance,
        asset_selection=sorted(downstream),
        run_config={**QUIET, **(run_config or {})},
        tags=run_tags(),
    )
    print_failed_checks(events)
    return success


def print_failed_checks(events) -> None:
    """Each failed check of a run with its problems, as the UI shows them."""
    for event in events:
        if event.event_type_value != "ASSET_CHECK_EVALUATION":
            continue
        evaluation = event.event_specific_data
        if evaluation.passed:
            continue
        key = evaluation.asset_check_key
        print(f"check failed: {key.asset_key.to_user_string()} {key.name}")
        problems = evaluation.metadata.get("problems")
        for line in (problems.value if problems is not None else [])[:20]:
            print(f"  {line}")
        if evaluation.description and problems is None:
            print(f"  {evaluation.description}")


def load_preset(path: Path) -> dict:
    """Run config from a YAML preset (see configs/)."""
    import yaml

    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SystemExit(f"{path}: cannot read the preset ({exc})") from exc
    if not isinstance(config, dict):
        raise SystemExit(f"{path}: a preset is a mapping like configs/train_quick.yaml")
    return config


def print_model_report(layout: DataLayout) -> None:
    import json

    from xmlai_assets.model.config import SCORECARD
    from xmlai_assets.model.store import champion, versions

    store = layout.models
    names = versions(store)
    if not names:
        return
    metadata = json.loads(store.read_bytes(f"{names[-1]}/metadata.json"))
    metrics = metadata["metrics"]
    print(f"model: {store.location(names[-1])} (champion: {champion(store) or 'none'})")
    columns = [name for name in SCORECARD if name != "champion"]
    scored_on = metadata.get("scored_on", "validation")
    print(f"  {scored_on:24}" + "".join(f"{name[:9]:>10}" for name in columns))
    keys = ("loss", "active_acc", "asset_acc", "scale_mae", "x_mae", "y_mae")
    for key in (*keys, "turn_on_ap", "turn_off_ap", "turn_on_ap_1s", "turn_off_ap_1s"):
        row = [metrics[name].get(key) if name in metrics else None for name in columns]
        print(f"  {key:24}" + "".join(f"{'-':>10}" if v is None else f"{v:10.4f}" for v in row))
    print(f"  all metrics: {store.location(names[-1] + '/metadata.json')}")
    print_placement_report(layout)


def print_placement_report(layout: DataLayout) -> None:
    import json

    from xmlai_assets.model.placement import PREDICTORS
    from xmlai_assets.model.store import placement_store, versions

    store = placement_store(layout.models)
    names = versions(store)
    if not names:
        return
    metadata = json.loads(store.read_bytes(f"{names[-1]}/metadata.json"))
    card = metadata["scorecard"]
    columns = [name for name in PREDICTORS if name in card]
    print(f"placement model: {store.location(names[-1])} (xmlai-assets suggest)")
    print(f"  {metadata['scored_on'] + ' onsets':24}" + "".join(f"{n[:9]:>10}" for n in columns))
    for key in ("top1", "top3"):
        print(f"  {key:24}" + "".join(f"{card[n][key]:10.3f}" for n in columns))
    margins = metadata.get("top3_margin", {})
    if margins:  # the baseline the model is least clearly ahead of
        name = min(margins, key=lambda n: margins[n]["low"])
        gap = margins[name]
        verdict = "beats the baselines" if metadata["beats_baselines"] else "not clearly ahead"
        print(
            f"  {verdict}: top-3 {gap['difference']:+.3f} against {name} "
            f"(95% interval {gap['low']:+.3f} to {gap['high']:+.3f})"
        )


def suggest_command(args) -> int:
    from xmlai_assets.model.store import ModelStoreError, suggest
    from xmlai_assets.timeline import TimelineError
    from xmlai_assets.timeline.schema import ASSET_CLASS_NAMES

    track = args.track.upper().removeprefix("V")
    if not track.isdigit():
        print(f"--track {args.track}: give a video track as V2 or 2", file=sys.stderr)
        return 2
    try:
        ref, version, found = suggest(
            args.timeline,
            int(track),
            clip=args.clip,
            at_seconds=args.at,
            top=args.top,
            version=args.version,
            out=args.out,
            replace_keyframes=args.replace_keyframes,
        )
    except (TimelineError, ModelStoreError) as exc:
        print(f"cannot suggest: {exc}", file=sys.stderr)
        if "keyframed" in str(exc):
            print("  (add --replace-keyframes to replace them)", file=sys.stderr)
        return 1
    print(
        f"V{ref.track} {ref.id} {ref.name!r} (frames {ref.start}-{ref.end}, "
        f"{ASSET_CLASS_NAMES[ref.asset]}): placement model {version}"
    )
    for i, s in enumerate(found, 1):
        v = s.as_dict()
        print(
            f"  {i}. {s.probability:6.1%}  scale {v['scale']:g}  centre x {v['x']:+.4f} "
            f"y {v['y']:+.4f}  crop l {v['crop_l']:g} r {v['crop_r']:g} t {v['crop_t']:g} "
            f"b {v['crop_b']:g}"
        )
    if args.out:
        print(f"wrote {args.out}: {ref.id} carries placement 1 (import it in Premiere Pro)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xmlai-assets", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialize the pipeline on a data folder")
    run.add_argument("--data-dir", type=Path, help="artifacts folder (default: ./data)")
    run.add_argument("--timelines-dir", type=Path, help="XML folder (default: DATA_DIR/timelines)")
    run.add_argument("--preset", type=Path, help="run config YAML, e.g. configs/train_quick.yaml")
    run.add_argument("--no-train", action="store_true", help="stop at the training sequences")
    run.add_argument(
        "--parse-runs",
        type=int,
        default=int(os.environ.get("XMLAI_PARSE_RUNS") or 1),
        help="parse the new files in this many runs at once, each with its share (on a cluster "
        "executor, one worker each; default: XMLAI_PARSE_RUNS or 1)",
    )
    sub.add_parser("init", help="create the Dagster instance in DAGSTER_HOME if it is new")
    synth = sub.add_parser("synth", help="write synthetic Premiere-style timelines")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--count", type=int, default=110)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--seconds", type=float, help="length of each timeline (default: 40-110 s)")
    hint = sub.add_parser(
        "suggest",
        help="where should a clip go: the team's usual placements for it, most likely first",
    )
    hint.add_argument("timeline", type=Path, help="an FCP7 XML export")
    hint.add_argument("--track", required=True, help="its video track: V2, or 2")
    which = hint.add_mutually_exclusive_group(required=True)
    which.add_argument("--clip", help="the clip's name on that track")
    which.add_argument("--at", type=float, help="or the time it plays at, in seconds")
    hint.add_argument("--top", type=int, default=3, help="how many placements (default 3)")
    hint.add_argument("--out", type=Path, help="write a copy with the first placement applied")
    hint.add_argument(
        "--replace-keyframes",
        action="store_true",
        help="with --out: a clip's keyframed motion or crop becomes the static placement",
    )
    hint.add_argument("--version", default="latest", help="a placement version (vNNNN)")
    args = parser.parse_args(argv)

    if args.command == "suggest":
        return suggest_command(args)

    if args.command == "synth":
        from xmlai_assets.synth import generate_timeline

        for i in range(args.count):
            generate_timeline(args.seed + i, seconds=args.seconds).write(args.out)
        print(f"wrote {args.count} timelines to {args.out}")
        return 0

    if args.command == "init":
        with _instance() as instance:
            print(f"Dagster instance ready in {instance.root_directory}")
        return 0

    layout = DataLayout.from_env()
    if args.data_dir or args.timelines_dir:
        layout = DataLayout.at(
            args.data_dir or layout.data_dir, args.timelines_dir, layout.models_url, layout.data_url
        )
    run_config = load_preset(args.preset) if args.preset else None
    ok = run_pipeline(
        layout, _instance(), run_config, train=not args.no_train, parse_runs=args.parse_runs
    )
    if not ok:
        print("FAILED: see the run log above, or the run in the UI (make ui)")
        return 1
    store = layout.artifacts
    print(f"done: artifacts in {store.location()}")
    from xmlai_assets.paths import ARTIFACTS

    for names in ARTIFACTS.values():
        size = store.size(names[0])
        print(
            f"  {names[0]:28} {size / 1e6:8.2f} MB"
            if size > 1e5
            else f"  {names[0]:28} {size / 1e3:8.1f} kB"
        )
    print_model_report(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
