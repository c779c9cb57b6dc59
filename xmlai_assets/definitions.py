"""The code location Dagster loads (`dg dev`, `dagster dev -m xmlai_assets.definitions`)."""

from __future__ import annotations

import dagster as dg

from xmlai_assets.defs.ingest import assets as ingest
from xmlai_assets.defs.resources import DataPaths


def build_definitions(paths: DataPaths | None = None) -> dg.Definitions:
    return dg.Definitions(
        assets=[ingest.timeline_xml, ingest.timeline_frames, ingest.master_training_data],
        asset_checks=[ingest.all_timelines_parsed],
        resources={"paths": paths or DataPaths.from_env()},
    )


defs = build_definitions()
