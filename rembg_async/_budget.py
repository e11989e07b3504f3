"""Credit budgets: a batch reserves a credit (the most an image can cost under its rules)
before it sends an image, and settles after, giving back what was not spent. The batch knows
only `CreditBudget`, so a budget shared by many processes (Redis) can stand in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ._exceptions import RembgError


class BudgetExhaustedError(RembgError):
    """The credit budget has no credit left for another image: the batch stops starting any.

    ``spent`` credits were spent (or may have been) out of ``max_credits``.
    """

    def __init__(self, spent: int, max_credits: int) -> None:
        super().__init__(
            f"the credit budget is spent: {spent} of {max_credits} credit(s) used or in flight"
        )
        self.spent = spent
        self.max_credits = max_credits


@runtime_checkable
class CreditBudget(Protocol):
    """What a batch needs of a credit budget: reserve before sending, settle after."""

    async def reserve(self, credits: int) -> bool:
        """Hold ``credits`` if the budget still has them; False (holding nothing) if not."""

    async def settle(self, reserved: int, spent: int) -> None:
        """End a reservation of ``reserved``: ``spent`` of it stays used, the rest is freed.

        ``spent`` may exceed ``reserved`` (a charge the batch could not prevent): it is counted.
        """

    def exhausted(self) -> BudgetExhaustedError:
        """The error that says the budget is spent, with its figures."""


class LocalCreditBudget:
    """A budget of ``max_credits`` for one process (the batch's ``max_credits=``)."""

    def __init__(self, max_credits: int) -> None:
        if max_credits < 0:
            raise ValueError("max_credits cannot be negative")
        self.max_credits = max_credits
        self.spent = 0
        self.held = 0

    def __repr__(self) -> str:
        return f"<LocalCreditBudget spent={self.spent} held={self.held} of {self.max_credits}>"

    async def reserve(self, credits: int) -> bool:
        """Hold ``credits`` if spent + held + credits stays within the budget."""
        if self.spent + self.held + credits > self.max_credits:
            return False
        self.held += credits
        return True

    async def settle(self, reserved: int, spent: int) -> None:
        """Free the reservation and count what was spent."""
        self.held -= reserved
        self.spent += spent

    def exhausted(self) -> BudgetExhaustedError:
        """The error for this budget as it stands."""
        return BudgetExhaustedError(self.spent + self.held, self.max_credits)


class Reservations:
    """A batch's hold on its budget (None: no limit), one credit per image in flight."""

    def __init__(self, budget: CreditBudget | None) -> None:
        self.budget = budget
        self._holding = 0  # credits reserved and not settled
        self._settled = asyncio.Event()

    async def reserve(self, halted: Callable[[], bool]) -> bool:
        """Hold a credit for one image, waiting for those in flight to settle before raising
        `BudgetExhaustedError`; False when the batch stopped meanwhile (``halted``)."""
        if self.budget is None:
            return True
        while not halted():
            if await self.budget.reserve(1):
                self._holding += 1
                return True
            if self._holding == 0:
                raise self.budget.exhausted()
            self._settled.clear()
            await self._settled.wait()
        return False

    async def settle(self, spent: int) -> None:
        if self.budget is not None:
            self._holding -= 1
            await self.budget.settle(1, spent)
            self._settled.set()

    def wake(self) -> None:
        """Have those waiting for a credit look again (the batch stopped)."""
        self._settled.set()
