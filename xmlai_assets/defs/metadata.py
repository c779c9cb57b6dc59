"""Metadata shapes shared by the assets: the CSV column schema, files, small tables."""

import dagster as dg

from xmlai_assets.features.preprocess import FileInfo
from xmlai_assets.timeline.schema import COLUMNS

OWNERS = ["team:video-layout"]


def column_schema() -> dg.TableSchema:
    """The 183 columns of the master and split CSVs."""

    def kind(name: str) -> str:
        if name in ("video_id", "source_video_name"):
            return "string"
        return "int" if name.endswith(("_active", "_asset")) else "float"

    return dg.TableSchema(columns=[dg.TableColumn(name, kind(name)) for name in COLUMNS])


def file_metadata(info: FileInfo, prefix: str = "") -> dict[str, dg.MetadataValue]:
    """Where a written file is, how large, and its content hash."""
    return {
        f"{prefix}path": dg.MetadataValue.path(str(info.path)),
        f"{prefix}size_bytes": dg.MetadataValue.int(info.size_bytes),
        f"{prefix}sha256": dg.MetadataValue.text(info.sha256),
    }


def table(records: list[dict], types: dict[str, str]) -> dg.MetadataValue:
    """A table shown in the UI: one record per row, `types` naming each column's type."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(r) for r in records],
        schema=dg.TableSchema(columns=[dg.TableColumn(k, t) for k, t in types.items()]),
    )
