"""Blocking data checks: a failure stops every downstream asset in the run, training included."""

import dagster as dg

from xmlai_assets.defs.ingest.assets import master_training_data
from xmlai_assets.defs.resources import DataPaths
from xmlai_assets.features.checks import master_problems, sequence_problems, split_problems
from xmlai_assets.features.frames import DataFileError
from xmlai_assets.features.split import read_video_ids
from xmlai_assets.features.windows import read_npz
from xmlai_assets.paths import MASTER_CSV, SPLITS, sequences_npz, split_csv


def _result(problems: list[str], **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems[:3]) if problems else None,
        metadata={"problems": problems, **metadata},
    )


def _latest_metadata(context: dg.AssetCheckExecutionContext, key: str) -> dict:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{key} has not been materialized")
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dg.asset_check(
    asset=master_training_data,
    blocking=True,
    description="The master CSV is fit to train on: the 183 documented columns in order; no "
    "missing, NaN or infinite value; active 0/1; asset 0..9; crops 0..100; time strictly "
    "increasing within each video; at least one video.",
)
def master_data_valid(paths: DataPaths) -> dg.AssetCheckResult:
    store = paths.layout.artifacts
    try:
        with store.reading(MASTER_CSV) as path:
            problems = master_problems(path)
    except FileNotFoundError:
        problems = ["there is no master CSV: materialize master_training_data"]
    return _result(problems, file=dg.MetadataValue.path(store.location(MASTER_CSV)))


def _sequences_check(split: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=f"{split}_sequences",
        name="sequences_well_formed",
        blocking=True,
        additional_deps=[f"{split}_data"],
        description=f"{split}_sequences.npz matches {split}_data.csv: array shapes and types; "
        "each timeline cut into the windows its length and the stride predict, in order; masks "
        "true on exactly the real steps; padded steps all zero; classes in range.",
    )
    def sequences_well_formed(
        context: dg.AssetCheckExecutionContext, paths: DataPaths
    ) -> dg.AssetCheckResult:
        store = paths.layout.artifacts
        config = _latest_metadata(context, f"{split}_sequences")
        try:
            with store.reading(sequences_npz(split)) as npz, store.reading(split_csv(split)) as csv:
                problems = sequence_problems(
                    read_npz(npz), read_video_ids(csv), config["window"], config["stride"]
                )
        except (DataFileError, FileNotFoundError) as exc:
            problems = [str(exc)]
        return _result(problems, window=config["window"], stride=config["stride"])

    return sequences_well_formed


train_sequences_well_formed = _sequences_check("train")
val_sequences_well_formed = _sequences_check("val")
test_sequences_well_formed = _sequences_check("test")


@dg.asset_check(
    asset="val_sequences",
    blocking=True,
    additional_deps=["train_sequences", "test_sequences"],
    description="No timeline has windows in two splits, and the held-out timelines are the "
    "ones the configured val_fraction, test_fraction and seed choose.",
)
def split_as_configured(
    context: dg.AssetCheckExecutionContext, paths: DataPaths
) -> dg.AssetCheckResult:
    config = _latest_metadata(context, "train_data")
    store = paths.layout.artifacts
    try:
        sides = {}
        for split in SPLITS:
            with store.reading(sequences_npz(split)) as npz:
                sides[split] = read_npz(npz, names=("video_ids",))
    except (DataFileError, FileNotFoundError) as exc:
        return _result([str(exc)])
    test_fraction = config.get("test_fraction", 0.0)
    problems = split_problems(sides, config["val_fraction"], test_fraction, config["seed"])
    return _result(
        problems,
        **{f"{split}_videos": len(set(seq.video_ids.tolist())) for split, seq in sides.items()},
        val_fraction=config["val_fraction"],
        test_fraction=test_fraction,
        seed=config["seed"],
    )
