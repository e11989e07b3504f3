"""Accounts, credits and billing cycles, in memory. A keyed call costs one credit: the cycle's
included ones first, then the prepaid balance (never reset). Usage is counted per UTC calendar
month and per billing cycle, as the hosted API keeps both."""

from __future__ import annotations

import calendar
from collections import defaultdict
from datetime import datetime, timezone
from typing import Any

import attrs


@attrs.frozen(kw_only=True)
class Account:
    """An API account of the local server.

    ``billing_anchor`` is the Unix start of one billing cycle (cycles then repeat monthly from it,
    ``stripeBillingSynced: true``); None means the cycle is the UTC calendar month.
    ``app_usage`` seeds the web editor's usage in the current month and cycle.
    """

    api_key: str = attrs.field(repr=False)
    membership: str = "Premium-20000"
    credits: int = 20_000
    prepaid_credits: int = 0
    email_verified: bool = True
    app_usage: int = 0
    billing_anchor: int | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        """An account from one entry of an ``--accounts`` file (unknown keys are an error)."""
        return cls(**data)


@attrs.frozen
class Window:
    """A billing window, inclusive Unix seconds at both ends."""

    start: int
    end: int


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` moved by whole calendar months, the day clamped to the target month's length."""
    year, month_index = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    day = min(moment.day, calendar.monthrange(year, month_index + 1)[1])
    return moment.replace(year=year, month=month_index + 1, day=day)


def _utc(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=timezone.utc)


def _month_from(start: datetime) -> Window:
    """The window of one month from ``start``."""
    return Window(int(start.timestamp()), int(add_months(start, 1).timestamp()) - 1)


@attrs.define
class Usage:
    """Credits used by the web editor (``app``) and through the API (``api``)."""

    app: int = 0
    api: int = 0


@attrs.define
class AccountState:
    """An account and everything that changes as it is used."""

    account: Account
    prepaid: int
    by_month: defaultdict[tuple[int, int], Usage] = attrs.field(factory=lambda: defaultdict(Usage))
    by_cycle: defaultdict[int, Usage] = attrs.field(factory=lambda: defaultdict(Usage))

    @classmethod
    def new(cls, account: Account, now: int) -> AccountState:
        """A fresh state of ``account``, its seeded web-editor usage counted at ``now``."""
        state = cls(account=account, prepaid=account.prepaid_credits)
        if account.app_usage:
            state.record(now, app=account.app_usage)
        return state

    def window_at(self, unix: int) -> Window:
        """The billing window that contains ``unix``."""
        anchor = self.account.billing_anchor
        if anchor is None:  # the UTC calendar month
            return _month_from(_utc(unix).replace(day=1, hour=0, minute=0, second=0))
        anchor_time, moment = _utc(anchor), _utc(unix)
        months = (moment.year - anchor_time.year) * 12 + moment.month - anchor_time.month
        # The estimate is off by at most one cycle either way (day and time within the month).
        for step in (months - 1, months, months + 1):
            start, end = (int(add_months(anchor_time, n).timestamp()) for n in (step, step + 1))
            if start <= unix < end:
                return Window(start, end - 1)
        raise AssertionError("unreachable: a cycle always contains the moment")  # pragma: no cover

    def window_starting(self, start: int) -> Window:
        """The window that starts at ``start``: a known cycle's, or one month from there."""
        window = self.window_at(start)
        return window if window.start == start else _month_from(_utc(start))

    def included_left(self, now: int) -> int:
        """Included credits left in the current cycle."""
        usage = self.by_cycle[self.window_at(now).start]
        return max(0, self.account.credits - usage.app - usage.api)

    def can_spend(self, now: int) -> bool:
        """Whether one more credit is available, included or prepaid."""
        return self.included_left(now) > 0 or self.prepaid > 0

    def spend(self, now: int) -> bool:
        """Count one API call; returns whether its credit was prepaid (for `refund`)."""
        from_prepaid = self.included_left(now) == 0
        if from_prepaid:
            self.prepaid -= 1
        self.record(now, api=1)
        return from_prepaid

    def refund(self, now: int, *, from_prepaid: bool) -> None:
        """Undo one `spend` of the same moment (the call failed after all)."""
        if from_prepaid:
            self.prepaid += 1
        self.record(now, api=-1)

    def record(self, now: int, *, app: int = 0, api: int = 0) -> None:
        """Count usage in the month and the cycle of ``now``."""
        moment = _utc(now)
        cycle = self.window_at(now).start
        for usage in (self.by_month[moment.year, moment.month], self.by_cycle[cycle]):
            usage.app += app
            usage.api += api
