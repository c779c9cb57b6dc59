"""The Dagster layer: assets, checks and resources that call the pure packages."""

import warnings

import dagster as dg

# observable_source_asset and backfill_policy are marked beta; the UI says so already.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
