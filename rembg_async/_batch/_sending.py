"""Sending one image of a batch: its turn, its credit (reserved as it goes to the network,
settled when its request ends), its `Call` handed to the client's exchange, and how it ends.
The run (`BatchRun`) holds the state these steps share."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .._budget import BudgetExhaustedError, CreditBudget, Reservations
from .._download import KeptTarget
from .._exchange import Call, Sender
from .._inputs import RemoteInputs, local_source, open_input
from .._limits import was_refused
from .._outputs import OutputFolder, Plan, Provenance
from .._progress import ProgressCallback, ProgressEvent, call_back
from .._retry import RetryPolicy
from .._storage._sinks import RemoteTarget
from ._items import (
    BatchItem,
    ItemProgressCallback,
    Tally,
    Wire,
    failed_item,
    for_batch,
    made_item,
    stops_batch,
)
from ._sends import Send, Sends, Turns


class _NotStarted(Exception):
    """The batch stopped, or its budget is spent, before this image could reserve a credit."""


class Sending:
    """How a batch sends one image, and stops sending; the state is the run's (`BatchRun`)."""

    _send_call: Sender
    _fields: dict[str, str]
    _retry: RetryPolicy
    _return_base64: bool
    _outputs: OutputFolder | None
    _on_item_progress: ItemProgressCallback | None
    _budget: CreditBudget | None
    _credits: Reservations
    _remote: RemoteInputs
    _tally: Tally
    _turns: Turns
    _sends: Sends
    _unstarted: list[tuple[int, Any]]
    stopped: BaseException | None
    interrupted: bool

    async def _sent(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send an image planned, once its turn comes; None when it was not started."""
        try:
            taken = await self._turns.take()
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        if not taken:
            self._unstarted.append((index, value))
            return None
        try:
            return await self._charged(index, value, target, plan)
        finally:
            self._turns.end()

    async def _charged(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send ``value`` within the credit budget, reserved as it goes to the network (a cache
        hit reserves none); its item, or None when it was not started."""
        wire = Wire()
        reserved = False

        async def admit() -> None:
            nonlocal reserved
            if not await self._reserve():
                raise _NotStarted
            reserved = True

        try:
            with self._sends.sending(index, value, wire):
                result = await self._send(index, value, target, plan, wire, admit)
        except _NotStarted:
            self._unstarted.append((index, value))
            return None
        except Exception as error:  # an item's failure is its own (unless it stops the batch)
            if reserved:
                await self._settle(wire, error)
            if was_refused(error) and not wire.sent:
                self._put_back(index, value, error)
                return None
            if wire.withheld:  # its retry, after the batch stopped
                return await self._between(index, value, wire, error)
            return await self._failed(index, value, error, wire)
        except BaseException as cancelled:  # what was sent may have been charged all the same
            if reserved:
                await self._settle(wire, cancelled)
            if isinstance(cancelled, asyncio.CancelledError) and self._sends.was_recalled():
                return await self._recalled(index, value, wire, cancelled)
            raise
        if reserved:
            await self._settle(wire, None)
        self._turns.proven = True  # the server (or the cache) took an image: the others may go
        return made_item(value, index, result, wire)

    async def _send(
        self,
        index: int,
        value: Any,
        target: Any,
        plan: Plan,
        wire: Wire,
        admit: Callable[[], Awaitable[None]],
    ) -> Any:
        if plan.problem is not None:
            raise plan.problem
        if plan.source is not None:
            source = plan.source  # a remote input, opened in its planning
        elif plan.read is not None:
            source = local_source(Path(value), plan.read)
        else:  # not read ahead (or unreadable: opening it again says why)
            source = await open_input(value, remote=self._remote)
        call = Call(
            source=source,
            fields=self._fields,
            output=self._kept(target, plan.made),
            returns="base64" if self._return_base64 else "file",
            on_upload=self._count("up", index, value, wire),
            on_download=self._count("down", index, value, wire),
            admit=admit,
        )
        budgeted = self._budget is not None
        return await self._send_call(
            call, for_batch(self._retry, wire, self._halted, charge_aware=budgeted)
        )

    async def _recalled(
        self, index: int, value: Any, wire: Wire, cancelled: asyncio.CancelledError
    ) -> BatchItem | None:
        """An image called back by a stop: not started, stopped between attempts, or (its upload
        began meanwhile) cancelled on the wire."""
        if wire.live is not None:
            return Send(index=index, value=value, wire=wire).cancelled(cancelled)
        if wire.failure is not None:
            return await self._between(index, value, wire, wire.failure)
        self._unstarted.append((index, value))
        return None

    async def _between(
        self, index: int, value: Any, wire: Wire, error: BaseException
    ) -> BatchItem | None:
        """An image stopped after an attempt failed with ``error``: not started when none of its
        attempts can have cost a credit (a re-run sends it), else failed with that error."""
        if wire.credits(error) == 0:
            self._unstarted.append((index, value))
            return None
        assert isinstance(error, Exception)
        return await self._failed(index, value, error, wire)

    def _kept(
        self, target: Any, made: Provenance | None
    ) -> Path | KeptTarget | RemoteTarget | None:
        """Where the result goes, noted in the folder's index as it is saved."""
        if made is None or self._outputs is None:
            return target  # type: ignore[no-any-return]
        return self._outputs.keep(target, made)

    def _put_back(self, index: int, value: Any, error: Exception) -> None:
        """The limiter refused to start ``value`` (a fleet's stop, a spent shared budget):
        nothing was sent, so it is not started, and the batch stops."""
        self._unstarted.append((index, value))
        self._stop_with(error)

    async def _failed(self, index: int, value: Any, error: Exception, wire: Wire) -> BatchItem:
        if stops_batch(error, wire):
            self._stop_with(error)  # before its turn passes on: more would fail the same way
        elif wire.sent:
            self._turns.proven = True
        return failed_item(value, index, error, wire)

    async def _reserve(self) -> bool:
        """Hold a credit for one image (see `Reservations`); False: not started."""
        try:
            return await self._credits.reserve(self._halted)
        except BudgetExhaustedError as spent:
            self._stop_with(spent)
            return False

    async def _settle(self, wire: Wire, error: BaseException | None) -> None:
        spent = wire.credits(error)
        self._tally.credits += spent
        await self._credits.settle(spent)

    def _count(self, direction: str, index: int, value: Any, wire: Wire) -> ProgressCallback:
        def count(event: ProgressEvent) -> None:
            wire.saw(event)
            self._tally.bytes[direction] += event.bytes

        async def count_and_tell(event: ProgressEvent) -> None:
            count(event)
            await call_back(self._on_item_progress, index, value, event)  # type: ignore[arg-type]

        # A plain function unless the caller listens: no coroutine per event.
        return count if self._on_item_progress is None else count_and_tell

    def _halted(self) -> bool:
        return self.stopped is not None or self.interrupted

    def _stop_with(self, error: BaseException) -> None:
        """Stop the batch for ``error`` (the first one stays): nothing more is sent."""
        if self.stopped is None:
            self.stopped = error
        self._halt()

    def _halt(self) -> None:
        """Send back to the inputs not started those waiting for a turn, a credit or the rate
        limiter."""
        self._turns.pass_on()
        self._credits.wake()
        self._sends.recall()
