"""Planning a batch's images: where each goes, its input read ahead, or how it ends unsent.

An image going to an output folder claims its target (an input given twice is a clash) and
is planned through that folder (``_outputs``): its provenance, its input read, and whether it
is already made (skipped), someone else's output, or refused. Local inputs are planned as a
group, in one thread call, and an image its planning settles ends at once as an item with no
task of its own (a re-run with nothing to do pays no task nor thread hop per image); the
others each plan in their own task. A target claimed is released once its image has ended.
What is planned is then sent (`_sending`).
"""

from __future__ import annotations

import asyncio
import collections
import os
from collections.abc import Coroutine
from typing import Any

from .._files import run_to_completion
from .._inputs import read_local_or_none
from .._outputs import OutputClashError, Plan, Provenance, Verdict, settled
from .._storage._stores import is_remote
from ._items import BatchItem, skipped_item
from ._sending import Sending


class Planning(Sending):
    """How a batch plans its images before sending them; the state is the run's (`BatchRun`)."""

    _targets: list[Any]
    _options_key: str
    _skip_existing: bool
    _ready: collections.deque[BatchItem]

    def _start(self, work: Coroutine[Any, Any, BatchItem | None]) -> None:
        """Run ``work`` as one of the batch's tasks (`BatchRun` does)."""
        raise NotImplementedError

    async def _one(self, index: int, value: Any) -> BatchItem | None:
        held: list[Any] = []  # the target claimed, whose folder the output folder holds
        try:
            return await self._planned_and_sent(index, value, held)
        finally:
            if held and self._outputs is not None:
                self._outputs.release(held[0])

    async def _planned_and_sent(self, index: int, value: Any, held: list[Any]) -> BatchItem | None:
        try:
            target, made, prepared, early = await self._plan(index, value, held)
        except asyncio.CancelledError:  # read ahead, never sent: an input not started
            self._unstarted.append((index, value))
            raise
        if early is not None:
            return early
        return await self._sent(index, value, (target, made), prepared)

    async def _plan(
        self, index: int, value: Any, held: list[Any]
    ) -> tuple[Any, Provenance | None, Plan | None, BatchItem | None]:
        """Where ``value`` goes, its provenance and its input read or opened (a local file with
        no output folder: read ahead); or the item it ends as without sending. The target
        claimed goes into ``held``, to be released once the image has ended."""
        outputs = self._outputs
        if outputs is None:
            if not isinstance(value, (str, os.PathLike)) or is_remote(value):
                return None, None, None, None
            return None, None, Plan(read=await run_to_completion(read_local_or_none, value)), None
        try:
            target: Any = self._targets[index] if self._targets else outputs.target(value, index)
            held.append(target)
            if not await outputs.claim(target, value):
                return target, None, None, skipped_item(value, index, target)
            plan = await outputs.plan(
                value, target, self._options_key, skip_existing=self._skip_existing
            )
        except (OutputClashError, OSError) as error:
            return None, None, None, BatchItem(input=value, index=index, error=error)
        early = self._settled(index, value, target, plan)
        return target, plan.made, plan if early is None else None, early

    async def _plan_group(self, group: list[tuple[int, Any]]) -> None:
        """Plan ``group`` (local inputs) with one thread call: an image its planning settles
        (skipped, someone else's output, refused) ends at once as an item with no task of its
        own (a re-run with nothing to do pays no task nor thread hop per image); the others
        start, their plan in hand. Cancelled meanwhile: the images not settled are not
        started."""
        outputs = self._outputs
        assert outputs is not None
        held: list[tuple[int, Any, Any]] = []  # claimed, to plan: (index, value, target)
        taken = 0  # of the group: claimed or settled
        try:
            for index, value in group:
                taken += 1  # held from here on while it is claimed
                early = await self._claim(index, value, held)
                if early is not None:
                    self._ready.append(early)
            pairs = [(value, target) for _, value, target in held]
            plans = await outputs.plan_many(
                pairs, self._options_key, skip_existing=self._skip_existing
            )
        except asyncio.CancelledError:  # read ahead, never sent: inputs not started
            for index, value, target in held:
                outputs.release(target)
                self._unstarted.append((index, value))
            self._unstarted.extend(group[taken:])
            raise
        for (index, value, target), plan in zip(held, plans, strict=True):
            early = self._settled(index, value, target, plan)
            if early is None:
                assert isinstance(plan, Plan)
                self._start(self._planned(index, value, target, plan))
            else:
                outputs.release(target)
                self._ready.append(early)

    async def _claim(
        self, index: int, value: Any, held: list[tuple[int, Any, Any]]
    ) -> BatchItem | None:
        """Claim ``value``'s target (held, in ``held``, from before the claim); or the item it
        ends as (given twice, a clash), its target released."""
        outputs = self._outputs
        assert outputs is not None
        try:
            target = self._targets[index] if self._targets else outputs.target(value, index)
        except (OutputClashError, OSError) as error:
            return BatchItem(input=value, index=index, error=error)
        held.append((index, value, target))
        try:
            if await outputs.claim(target, value):
                return None
            early = skipped_item(value, index, target)
        except (OutputClashError, OSError) as error:
            early = BatchItem(input=value, index=index, error=error)
        held.pop()
        outputs.release(target)
        return early

    def _settled(
        self, index: int, value: Any, target: Any, plan: Plan | OSError
    ) -> BatchItem | None:
        """The item a planned image ends as without sending, if its plan says so."""
        if isinstance(plan, OSError):
            return BatchItem(input=value, index=index, error=plan)
        if plan.verdict is Verdict.FOREIGN:
            assert self._outputs is not None
            return BatchItem(input=value, index=index, error=self._outputs.foreign(target))
        if settled(plan.verdict, self._skip_existing):
            return skipped_item(value, index, target)
        return None

    async def _planned(self, index: int, value: Any, target: Any, plan: Plan) -> BatchItem | None:
        """Send an image planned in a group; its target is released once it has ended."""
        try:
            return await self._sent(index, value, (target, plan.made), plan)
        finally:
            assert self._outputs is not None
            self._outputs.release(target)
