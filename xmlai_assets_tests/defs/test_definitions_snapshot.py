"""A snapshot of the definitions, so that lineage, checks and automation change only on purpose.

After an intended change, rewrite the snapshot with
    UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest xmlai_assets_tests/defs/test_definitions_snapshot.py
and review its diff.
"""

import json
import os
from pathlib import Path

import dagster as dg

from xmlai_assets.definitions import build_definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def describe(defs: dg.Definitions) -> dict:
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "code_version": node.code_version,
            "partitioned": node.partitions_def is not None,
            "pools": sorted(node.pools or []),
            "has_description": bool(node.description),
            "checks": sorted(
                f"{k.name}{' (blocking)' if graph.get_check_spec(k).blocking else ''}"
                for k in graph.asset_check_keys
                if k.asset_key == key
            ),
        }
    schedules = {
        s.name: {"cron": s.cron_schedule, "timezone": s.execution_timezone, "job": s.job_name}
        for s in defs.schedules or []
    }
    sensors = {s.name: {"interval_s": s.minimum_interval_seconds} for s in defs.sensors or []}
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.selection.resolve(graph))
        for job in defs.jobs or []
    }
    return {"assets": assets, "schedules": schedules, "sensors": sensors, "jobs": jobs}


def test_definitions_match_the_snapshot():
    current = describe(build_definitions())
    if os.environ.get("UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_lineage_reads_from_xml_files_to_the_model():
    graph = build_definitions().resolve_asset_graph()
    chain = [
        "timeline_xml",
        "timeline_frames",
        "master_training_data",
        "train_data",
        "scalers",
        "train_sequences",
        "trained_model",
    ]
    for parent, child in zip(chain, chain[1:], strict=False):
        assert dg.AssetKey(parent) in graph.get(dg.AssetKey(child)).parent_keys, (parent, child)
