"""remove_many: the run (`_run`: its loop, planning, stops, closing), the sending of one image
(`_sending`: turns, recall on a stop), and what it reports (`_items`)."""

from ._items import (
    BatchItem,
    BatchProgress,
    BatchProgressCallback,
    ItemProgressCallback,
    SyncBatchItem,
    Tally,
    Wire,
    describe,
    failed_in,
    failed_inputs,
    latest_statuses,
    manifest_line,
    output_at,
    skipped_item,
    statuses_of,
    stops_batch,
)
from ._run import BatchRun, ItemRun

__all__ = [
    "BatchItem",
    "BatchProgress",
    "BatchProgressCallback",
    "BatchRun",
    "ItemProgressCallback",
    "ItemRun",
    "SyncBatchItem",
    "Tally",
    "Wire",
    "describe",
    "failed_in",
    "failed_inputs",
    "latest_statuses",
    "manifest_line",
    "output_at",
    "skipped_item",
    "statuses_of",
    "stops_batch",
]
