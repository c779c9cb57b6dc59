"""Metadata shapes shared by the assets: the CSV column schema, files, small tables."""

import csv
import itertools
import math

import dagster as dg

# The tag names Dagster gives an event's data version (not re-exported at the top level).
from dagster._core.definitions.data_version import (
    DATA_VERSION_IS_USER_PROVIDED_TAG,
    DATA_VERSION_TAG,
)

from xmlai_assets.artifacts import ArtifactStore
from xmlai_assets.features.preprocess import FileInfo
from xmlai_assets.paths import ARTIFACTS, DataLayout
from xmlai_assets.timeline.schema import COLUMNS, column_description

OWNERS = ["team:video-layout"]


def column_schema() -> dg.TableSchema:
    """The 183 columns of the master and split CSVs."""

    def kind(name: str) -> str:
        if name in ("video_id", "source_video_name"):
            return "string"
        return "int" if name.endswith(("_active", "_asset")) else "float"

    return dg.TableSchema(
        columns=[dg.TableColumn(name, kind(name), column_description(name)) for name in COLUMNS]
    )


def file_metadata(info: FileInfo, prefix: str = "") -> dict[str, dg.MetadataValue]:
    """Where a written file is, how large, and its content hash."""
    return {
        f"{prefix}path": dg.MetadataValue.path(info.location),
        f"{prefix}size_bytes": dg.MetadataValue.int(info.size_bytes),
        f"{prefix}sha256": dg.MetadataValue.text(info.sha256),
    }


def table(records: list[dict], types: dict[str, str]) -> dg.MetadataValue:
    """A table shown in the UI: one record per row, `types` naming each column's type."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(k, t) for k, t in types.items()]),
    )


def rounded(value: float, digits: int = 4) -> float:
    """A number as the UI should show it: a few significant decimals, not seventeen."""
    return float(f"{value:.{digits}g}") if value else 0.0


def table_number(value: float | None) -> float | None:
    """A number in a UI table: `rounded`, and empty where there is none (nothing scored, or
    no probabilities to score)."""
    return None if value is None or not math.isfinite(value) else rounded(value)


def observation_tags(version: str) -> dict[str, str]:
    """Tags that give an event a data version of our choosing (a content hash), as Dagster
    writes them for a `DataVersion` a function returns."""
    return {DATA_VERSION_TAG: version[:32], DATA_VERSION_IS_USER_PROVIDED_TAG: "true"}


def verified_sha256(
    context: dg.OpExecutionContext, key: dg.AssetKey, layout: DataLayout, field: str = "sha256"
) -> str:
    """The sha256 that `key`'s latest materialization recorded for its artifact, after checking
    the artifact still has it: a truncated or replaced artifact stops the step with its reason
    instead of being read."""
    event = context.instance.get_latest_materialization_event(key)
    recorded = event.asset_materialization.metadata.get(field) if event else None
    if recorded is None:
        raise dg.Failure(f"{key.to_user_string()} has no recorded materialization; materialize it")
    store, name = layout.artifacts, ARTIFACTS[key.to_user_string()][0]
    try:
        actual = store.sha256(name)
    except OSError as exc:
        raise dg.Failure(f"{store.location(name)}: cannot read ({exc.strerror or exc})") from exc
    if actual != recorded.value:
        raise dg.Failure(
            f"{store.location(name)} is not the file {key.to_user_string()} wrote (sha256 "
            f"{actual[:12]}..., recorded {recorded.value[:12]}...): it was cut short or replaced "
            f"since; materialize {key.to_user_string()} again"
        )
    return actual


def csv_preview(
    store: ArtifactStore, name: str, columns: int = 12, rows: int = 5
) -> dg.MetadataValue:
    """The first rows and columns of a CSV artifact as a Markdown table (from its first 64 KiB;
    a cut-off last line is left out)."""
    head = store.read_bytes(name, limit=1 << 16).decode("utf-8", errors="replace")
    complete = head.splitlines(keepends=True)
    if complete and not complete[-1].endswith("\n"):
        complete.pop()
    lines = [line[:columns] for line in itertools.islice(csv.reader(complete), rows + 1)]
    if not lines:
        return dg.MetadataValue.md("(empty)")
    header, body = lines[0], lines[1:]
    text = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    text += ["| " + " | ".join(cells) + " |" for cells in body]
    return dg.MetadataValue.md("\n".join(text))
