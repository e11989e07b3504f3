"""remove_many: a batch's run (`_run`: its loop, read-ahead, stops, closing), the planning of
its images (`_planning`: claims, plans, a group per thread call), the sending of one image
(`_sending`: its turn, its credit, its call, how it ends), its items and progress (`_items`:
what each image became, the manifest's lines, the batch's retry rules) and the images on the
wire (`_sends`: turns, recall on a stop). Where outputs go is `_outputs`'."""

from ._items import (
    BatchItem,
    BatchProgress,
    BatchProgressCallback,
    BatchRetry,
    ItemProgressCallback,
    SyncBatchItem,
    Tally,
    Wire,
    describe,
    failed_in,
    failed_inputs,
    failed_item,
    for_batch,
    latest_statuses,
    made_item,
    manifest_line,
    skipped_item,
    statuses_of,
    stops_batch,
)
from ._run import READ_AHEAD, BatchRun

__all__ = [
    "READ_AHEAD",
    "BatchItem",
    "BatchProgress",
    "BatchProgressCallback",
    "BatchRetry",
    "BatchRun",
    "ItemProgressCallback",
    "SyncBatchItem",
    "Tally",
    "Wire",
    "describe",
    "failed_in",
    "failed_inputs",
    "failed_item",
    "for_batch",
    "latest_statuses",
    "made_item",
    "manifest_line",
    "skipped_item",
    "statuses_of",
    "stops_batch",
]
