"""One dynamic partition per timeline file in the watched folder."""

from __future__ import annotations

import dagster as dg

from xmlai_assets.paths import list_timeline_files

timeline_files = dg.DynamicPartitionsDefinition(name="timeline_files")


def sync_timeline_partitions(instance: dg.DagsterInstance, folder) -> tuple[list[str], list[str]]:
    """Add a partition for each new file in `folder`, remove those whose file is gone (or whose
    key names no timeline file there, such as one added by hand)."""
    present = set(list_timeline_files(folder))
    known = set(instance.get_dynamic_partitions(timeline_files.name))
    added = sorted(present - known)
    removed = sorted(known - present)
    if added:
        instance.add_dynamic_partitions(timeline_files.name, added)
    for key in removed:
        instance.delete_dynamic_partition(timeline_files.name, key)
    return added, removed
