"""Pure timeline code: FCP7 XML (xmeml) in, per-sample track layout frames out."""

from xmlai_assets.timeline.asset_classes import ASSET_RULES, AssetRules, classify_asset
from xmlai_assets.timeline.parser import TimelineInfo, parse_timeline, parse_timeline_with_info
from xmlai_assets.timeline.schema import COLUMNS, N_TRACKS, TRACK_PARAMS, track_column
from xmlai_assets.timeline.xml import TimelineError

__all__ = [
    "ASSET_RULES",
    "COLUMNS",
    "N_TRACKS",
    "TRACK_PARAMS",
    "AssetRules",
    "TimelineError",
    "TimelineInfo",
    "classify_asset",
    "parse_timeline",
    "parse_timeline_with_info",
    "track_column",
]
