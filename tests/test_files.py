"""run_to_completion: thread calls that stay correct when their caller is cancelled."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rembg_async._files import run_to_completion


@pytest.mark.parametrize("cancellations", [1, 2])
async def test_cancelled_caller_waits_and_undoes(cancellations: int) -> None:
    """Cancelled mid-call (once, or again while waiting, as a timeout and then its task group
    do): the call still finishes, its result is undone, CancelledError follows."""
    release = threading.Event()
    undone: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "made"

    task = asyncio.create_task(run_to_completion(slow, undo=undone.append))
    for _ in range(cancellations):
        await asyncio.sleep(0.01)
        task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the thread call to finish
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert undone == ["made"]


async def test_result_and_errors_pass_through() -> None:
    """Uncancelled, it returns the result or raises the call's error; undo is not called."""
    undone: list[object] = []
    assert await run_to_completion(lambda: 42, undo=undone.append) == 42
    with pytest.raises(ZeroDivisionError):
        await run_to_completion(lambda: 1 / 0, undo=undone.append)
    assert undone == []


async def test_calls_behind_a_stuck_one_go_to_another_thread() -> None:
    """A call that hangs (a network file system gone quiet) does not hold up the calls made
    after it: once it has run for a while, another thread takes them."""
    release = threading.Event()
    slow = asyncio.create_task(run_to_completion(release.wait, 10))
    await asyncio.sleep(0.1)  # let it be taken, and be seen as stuck
    try:
        assert await asyncio.wait_for(run_to_completion(lambda: "quick"), 5) == "quick"
        assert not slow.done()
    finally:
        release.set()
    assert await slow is True


async def test_calls_of_one_turn_wake_the_threads_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls made in one turn of the loop are handed over together: one hand-over, however
    many calls (waking a thread is the dearest part of a thread hop)."""
    from rembg_async._files import _FILE_THREADS

    hand_overs: list[int] = []
    hand_over = _FILE_THREADS._hand_over

    def counted(loop: asyncio.AbstractEventLoop) -> None:
        hand_overs.append(len(_FILE_THREADS._this_turn[loop]))
        hand_over(loop)

    monkeypatch.setattr(_FILE_THREADS, "_hand_over", counted)
    results = await asyncio.gather(*(run_to_completion(abs, -number) for number in range(10)))
    assert results == list(range(10))
    assert hand_overs == [10]


async def test_an_outcome_is_not_held_back_behind_a_slow_call() -> None:
    """A thread that goes on to a slow call still lets the loop have what it finished before:
    here the second call waits until the loop has seen the first one's outcome."""
    seen = threading.Event()

    async def first() -> None:
        await run_to_completion(lambda: "opened")
        seen.set()

    _, waited = await asyncio.wait_for(asyncio.gather(first(), run_to_completion(seen.wait, 10)), 5)
    assert waited is True


async def test_a_call_waiting_for_a_later_one_gets_it_run() -> None:
    """A call that waits for a call made after it (opening a FIFO to read waits for a writer)
    is seen as stuck while the loop waits: another thread takes the later call, made too soon
    after it for its own hand-over to see it stuck."""
    writer_came = threading.Event()
    entered = threading.Event()

    def open_to_read() -> bool:
        entered.set()
        return writer_came.wait(10)

    reader = asyncio.create_task(run_to_completion(open_to_read))
    while not entered.is_set():  # taken by a thread, and waiting there
        await asyncio.sleep(0.001)
    writer = run_to_completion(writer_came.set)
    assert await asyncio.wait_for(asyncio.gather(reader, writer), 5) == [True, None]


def test_a_loop_closed_with_calls_out_leaves_nothing_behind() -> None:
    """A loop closed while it has calls in the threads (or closed before its last patrol, as
    ``asyncio.run`` does) is forgotten once another loop makes calls: nothing is kept for it,
    and the outcomes of its calls are not posted."""
    from rembg_async._files import _FILE_THREADS

    release = threading.Event()
    closed = asyncio.new_event_loop()

    async def leave_a_call_out() -> None:
        _FILE_THREADS.submit(release.wait, (10,))
        await asyncio.sleep(0.05)  # handed over, and taken by a thread

    closed.run_until_complete(leave_a_call_out())
    closed.call_soon(_FILE_THREADS.submit, abs, (-1,))  # made in the loop's last turn...
    closed.call_soon(closed.stop)  # ...so never handed over
    closed.run_forever()
    closed.close()
    release.set()
    assert asyncio.run(run_to_completion(abs, -3)) == 3
    tables = (_FILE_THREADS._unresolved, _FILE_THREADS._this_turn, _FILE_THREADS._finished)
    assert all(closed not in table for table in tables)
    assert closed not in _FILE_THREADS._woken
