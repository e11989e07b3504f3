"""A batch's pure rules: what an item cost, when a retry may be charged, when a batch stops,
and its manifest's lines."""

from __future__ import annotations

import asyncio
import errno
import json
import time
from pathlib import Path

import aiohttp
import attrs
import pytest

from rembg_async import (
    APIConnectionError,
    APITimeoutError,
    Base64Image,
    BatchItem,
    BatchProgress,
    ImageFile,
    InvalidInputError,
    ProgressEvent,
    RateLimitError,
    RetryPolicy,
    SyncBatchItem,
)
from rembg_async._batch._items import (
    BatchRetry,
    Tally,
    Wire,
    describe,
    failed_in,
    failed_inputs,
    failed_item,
    for_batch,
    made_item,
    manifest_line,
    skipped_item,
    stops_batch,
)
from rembg_async._contract import MSG_RATE_DAILY, MSG_RATE_MONTHLY, MSG_RATE_SHORT_TERM
from rembg_async._exceptions import error_from_message, error_from_response
from rembg_async._results import SyncImageFile


def event(attempt: int, *, upload: bool) -> ProgressEvent:
    """A progress event of ``attempt``'s upload (or download)."""
    return ProgressEvent(
        loaded=1,
        total=1,
        progress=1.0,
        bytes=1,
        rate=None,
        estimated=None,
        upload=upload,
        download=not upload,
        attempt=attempt,
    )


def wire(sent: set[int], answered: set[int] = frozenset()) -> Wire:  # type: ignore[assignment]
    """A wire that saw the uploads of ``sent`` and the 200s of ``answered``."""
    seen = Wire()
    for attempt in sent:
        seen.saw(event(attempt, upload=True))
    for attempt in answered:
        seen.saw(event(attempt, upload=False))
    return seen


def refused_connection() -> APIConnectionError:
    """A connection error caused by a refused connection (the server was never reached)."""
    error = APIConnectionError("refused")
    error.__cause__ = aiohttp.ClientConnectorError(
        aiohttp.client_reqrep.ConnectionKey("h", 1, False, False, None, None, None),
        OSError(errno.ECONNREFUSED, "refused"),
    )
    return error


def test_attempts_are_the_last_that_moved_anything() -> None:
    """Attempts: the highest attempt that sent or received; 0 when none did."""
    assert Wire().attempts == 0
    assert wire({1, 2}).attempts == 2
    assert wire({1}, {3}).attempts == 3


@pytest.mark.parametrize(
    ("error", "charged"),
    [
        (APIConnectionError("dropped"), True),
        (APITimeoutError("slow", timeout="read"), True),
        (APITimeoutError("slow", timeout="attempt"), True),
        (APITimeoutError("no connect", timeout="connect"), False),
        (error_from_message(503, "down", {}), False),
        (None, True),
    ],
)
def test_a_sent_attempt_may_be_charged_unless_certainly_free(
    error: BaseException | None, charged: bool
) -> None:
    """Sent and not answered: charged unless the server answered an error or was not reached."""
    assert wire({1}).may_be_charged(1, error) is charged
    assert wire(set()).may_be_charged(1, error) is False  # never sent: free
    assert wire(set(), {1}).may_be_charged(1, error_from_message(503, "x", {}))  # a 200: charged


def test_a_refused_connection_is_free() -> None:
    """A failure caused by a refused connection never reached the server: free."""
    assert not wire({1}).may_be_charged(1, refused_connection())
    assert wire({1}).may_be_charged(1, APIConnectionError("no cause"))


def test_credits_count_the_200s_and_a_last_attempt_that_may_have_cost() -> None:
    """Credits: one per 200, plus one for a failed last attempt that may have been charged."""
    assert wire({1}, {1}).credits(None) == 1
    assert wire({1, 2}).credits(APIConnectionError("dropped")) == 1
    assert wire({1, 2}).credits(error_from_message(503, "x", {})) == 0
    assert wire({1}, {1}).credits(APIConnectionError("after the 200")) == 1
    assert wire({1, 2}, {1}).credits(APIConnectionError("dropped")) == 2


def test_charge_aware_retry_stops_after_a_possible_charge() -> None:
    """Under a budget: no retry after an attempt that may have cost; the base rule otherwise."""
    seen = wire({1})
    base = RetryPolicy(max_retries=5, initial_backoff=7, max_backoff=7)
    policy = for_batch(base, seen, lambda: False, charge_aware=True)
    assert isinstance(policy, BatchRetry)
    assert policy.max_retries == 5
    dropped = APIConnectionError("dropped")
    dropped.attempts = 1
    assert policy.delay(dropped, 1) is None
    answered = error_from_message(503, "down", {})
    answered.attempts = 1
    delay = policy.delay(answered, 1)
    assert delay is not None
    assert 3.5 <= delay <= 7


def test_a_batch_policy_retries_nothing_once_halted() -> None:
    """Each failed attempt takes the image off the wire; once the batch has halted, a retry
    the base policy would make (after a 503, a short-term 429) is withheld."""
    halted = False
    seen = wire({1})
    policy = for_batch(RetryPolicy(max_retries=5), seen, lambda: halted, charge_aware=False)
    down = error_from_message(503, "down", {})
    down.attempts = 1
    assert policy.delay(down, 1) is not None
    assert (seen.live, seen.failure, seen.withheld) == (None, down, False)
    halted = True
    assert policy.delay(down, 1) is None
    assert seen.withheld
    throttled = error_from_message(429, MSG_RATE_SHORT_TERM, {"Retry-After": "1"})
    assert isinstance(throttled, RateLimitError)
    assert policy.flow_control_delay(throttled, 0.0, 1) is None
    assert seen.credits(asyncio.CancelledError()) == 0  # the 503 ended it: certainly free


@pytest.mark.parametrize(
    ("error", "sent", "stops"),
    [
        (error_from_message(429, MSG_RATE_DAILY, {}), False, True),
        (error_from_message(429, MSG_RATE_MONTHLY, {}), False, True),
        (error_from_message(429, MSG_RATE_SHORT_TERM, {}), False, False),
        (error_from_response(401, b'{"error": "k"}', {}), False, True),
        (error_from_response(402, b'{"error": "k"}', {}), False, True),
        (error_from_response(403, b'{"error": "k"}', {}), False, True),
        (error_from_response(400, b'{"error": "k"}', {}), False, False),
        (OSError(errno.ENOSPC, "full"), True, True),
        (OSError(errno.EACCES, "denied"), True, True),
        (OSError(errno.ENOSPC, "full"), False, False),
        (OSError(errno.ENOENT, "gone"), True, False),
        (InvalidInputError("bad"), True, False),
        (None, True, False),
    ],
)
def test_what_stops_a_batch(error: BaseException | None, sent: bool, stops: bool) -> None:
    """A daily or monthly limit, a refused key or account, an unwritable output after sending."""
    assert stops_batch(error, wire({1} if sent else set())) is stops


def test_an_item_status_and_progress_finished() -> None:
    """An item is ok, skipped or failed; progress's finished counts done and failed."""
    assert BatchItem(input="a", index=0).status == "ok"
    assert BatchItem(input="a", index=0, skipped=True).status == "skipped"
    failed = BatchItem(input="a", index=0, skipped=True, error=OSError("x"))
    assert (failed.status, failed.ok) == ("failed", False)
    progress = BatchProgress(
        done=3, failed=2, in_flight=1, total=9, bytes_up=0, bytes_down=0, rate=None, estimated=None
    )
    assert progress.finished == 5


def test_the_manifest_names_inputs_and_reads_back_the_latest_status(tmp_path: Path) -> None:
    """A path as itself, anything else by type and index; a re-run redoes the latest failures."""
    assert describe(Path("a/b.png"), 3) == "a/b.png"
    assert describe(b"...", 3) == "<bytes #3>"
    lines = [
        manifest_line(BatchItem(input="a.png", index=0, error=OSError("x"), attempts=2)),
        manifest_line(BatchItem(input="b.png", index=1, error=OSError("y"))),
        "\n",
        manifest_line(BatchItem(input="a.png", index=0, output_path=Path("out/a.png"))),
    ]
    first = json.loads(lines[0])
    assert first == {
        "input": "a.png",
        "output": None,
        "status": "failed",
        "error": "x",
        "error_type": "OSError",
        "bytes": None,
        "attempts": 2,
        "credits": 0,
        "cached": False,
    }
    assert (json.loads(lines[1])["attempts"], json.loads(lines[1])["credits"]) == (0, 0)
    assert json.loads(lines[3])["output"] == "out/a.png"
    assert json.loads(lines[3])["error"] is None
    assert failed_in(lines) == ["b.png"]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(lines))
    assert failed_inputs(manifest) == ["b.png"]


def test_items_progress_and_the_budget_policy_take_keywords_only() -> None:
    """Results and the budget's policy are built with keywords (so fields can be added)."""
    with pytest.raises(TypeError, match="positional"):
        BatchItem("a", 0)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        BatchProgress(1, 0, 0, None, 0, 0, None, None)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        BatchRetry(RetryPolicy(), Wire(), lambda: False)  # type: ignore[misc]
    with pytest.raises(TypeError, match="positional"):
        SyncBatchItem(None, input="a", index=0)  # type: ignore[misc]


def test_a_tally_counts_each_outcome_once_and_estimates_from_its_rate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Items count by outcome; progress gives the finished rate and the time left at that rate
    (a fake clock), and none of either before an item ends or without a total."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tally = Tally(total=10, started_at=100.0)
    tally.bytes["up"], tally.bytes["down"] = 7, 9
    assert tally.progress(in_flight=0).rate is None
    for item in (
        BatchItem(input="a", index=0),
        BatchItem(input="b", index=1, error=ValueError("bad")),
        BatchItem(input="c", index=2, cancelled=True),
        BatchItem(input="d", index=3),
    ):
        tally.add(item)
    now[0] = 102.0
    assert tally.progress(in_flight=3) == BatchProgress(
        done=2,
        failed=1,
        cancelled=1,
        in_flight=3,
        total=10,
        bytes_up=7,
        bytes_down=9,
        rate=2.0,
        estimated=3.0,
    )
    assert Tally(total=None, started_at=100.0).progress(in_flight=0).estimated is None
    endless = Tally(total=None, started_at=100.0)
    endless.add(BatchItem(input="a", index=0))
    now[0] = 104.0
    assert endless.progress(in_flight=0).rate == 0.25
    assert endless.progress(in_flight=0).estimated is None


def test_a_short_term_429_ends_the_attempt_on_the_wire_and_is_waited_out() -> None:
    """A short-term 429 ends the attempt that met it (the image is off the wire while it waits)
    and, while the batch runs, is waited out as the base policy says."""
    seen = wire({1})
    seen.live = 1
    policy = for_batch(RetryPolicy(), seen, lambda: False, charge_aware=False)
    throttled = error_from_message(429, MSG_RATE_SHORT_TERM, {"Retry-After": "1"})
    assert isinstance(throttled, RateLimitError)
    delay = policy.flow_control_delay(throttled, 0.0, 1)
    assert delay == RetryPolicy().flow_control_delay(throttled, 0.0, 1)
    assert delay is not None
    assert (seen.live, seen.failure) == (None, throttled)


def test_a_made_item_says_where_its_result_is_and_what_it_cost(tmp_path: Path) -> None:
    """A local file's item has its path, a remote one's its URL, base64 neither; attempts are
    the wire's (at least one), credits what the wire may have cost."""
    local = ImageFile(output_image_path=tmp_path / "a.webp", content_type="image/webp", size=1)
    remote = attrs.evolve(local, url="s3://bucket/a.webp")
    data = Base64Image(
        base64_image="data:image/webp;base64,AA==", content_type="image/webp", size=1
    )
    twice = wire({1, 2}, {2})
    made = made_item("a", 3, local, twice)
    assert (made.output_path, made.output_url, made.attempts, made.index) == (
        tmp_path / "a.webp",
        None,
        2,
        3,
    )
    assert made.credits == twice.credits(None) == 1
    assert (
        made_item("a", 0, remote, Wire()).output_path,
        made_item("a", 0, remote, Wire()).output_url,
    ) == (None, "s3://bucket/a.webp")
    assert made_item("a", 0, data, Wire()).output_path is None
    assert made_item("a", 0, data, Wire()).attempts == 1


def test_a_skipped_item_points_at_what_is_there(tmp_path: Path) -> None:
    """A skipped input's item names its output: a URL for a remote folder, else a path."""
    remote = skipped_item("a.png", 0, "s3://bucket/out/a.webp")
    assert (remote.skipped, remote.output_url, remote.output_path) == (
        True,
        "s3://bucket/out/a.webp",
        None,
    )
    local = skipped_item("a.png", 1, tmp_path / "a.webp")
    assert (local.skipped, local.output_path, local.output_url) == (True, tmp_path / "a.webp", None)
    named = skipped_item("a.png", 1, "out/a.webp")
    assert (named.output_path, named.output_url) == ("out/a.webp", None)


def test_a_failed_item_counts_the_attempts_that_were_made() -> None:
    """A refusal before any upload was seen still counts its one request; an error that says
    its attempts is believed; another takes the wire's count."""
    refused = error_from_message(400, "bad", {})
    refused.attempts = 0
    assert failed_item("a", 0, refused, Wire()).attempts == 1
    sent = error_from_message(503, "down", {})
    sent.attempts = 3
    assert failed_item("a", 0, sent, wire({1, 2, 3})).attempts == 3
    sent.attempts = 0
    assert failed_item("a", 0, sent, wire({1, 2})).attempts == 0
    assert failed_item("a", 0, OSError("disk"), wire({1, 2})).attempts == 2


def test_a_sync_item_is_the_same_item_with_its_file_handed_over(tmp_path: Path) -> None:
    """`SyncBatchItem.of` keeps every field; a file result becomes a `SyncImageFile`."""
    path = tmp_path / "a.webp"
    path.write_bytes(b"x")
    made = BatchItem(
        input="a",
        index=2,
        result=ImageFile(output_image_path=path, content_type="image/webp", size=1),
        attempts=2,
        credits=1,
    )
    sync = SyncBatchItem.of(made)
    assert isinstance(sync, SyncBatchItem)
    assert isinstance(sync.result, SyncImageFile)
    assert (sync.input, sync.index, sync.attempts, sync.credits) == ("a", 2, 2, 1)
    failed = BatchItem(input="b", index=0, error=ValueError("x"))
    assert SyncBatchItem.of(failed).error is failed.error


def test_progress_counts_what_finished_and_a_rate_only_once_something_did(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`finished` adds every outcome; a fresh tally has no credits nor bytes; the rate needs an
    ended item and some time, even under a second."""
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    assert BatchProgress(
        done=3, failed=2, cancelled=1, in_flight=0, total=None, bytes_up=0, bytes_down=0,
        rate=None, estimated=None,
    ).finished == 6  # fmt: skip
    fresh = Tally(total=4, started_at=100.0)
    now[0] = 100.5
    assert fresh.credits == 0
    assert fresh.progress(in_flight=0) == BatchProgress(
        done=0, failed=0, cancelled=0, in_flight=0, total=4, bytes_up=0, bytes_down=0,
        rate=None, estimated=None,
    )  # fmt: skip
    fresh.add(BatchItem(input="a", index=0))
    assert fresh.progress(in_flight=0).rate == 2.0
    now[0] = 100.0
    assert fresh.progress(in_flight=0).rate is None
