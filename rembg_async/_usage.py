"""Membership and credit usage as typed values. Every field of the server's JSON is checked: a
wrong shape (a string for a number, a number too large for a date, a field missing) raises
`APIResponseError`, never a conversion's ``TypeError`` or ``OverflowError``."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any, Final

import attrs

from ._contract import MSG_PERIOD_WITH_CALENDAR, out_of_range_message
from ._exceptions import APIResponseError, InvalidInputError

_MISSING: Final = object()
#: Counts and Unix times beyond this are no real usage (it is past the year 9999 in seconds).
_MAX_NUMBER: Final = 253_402_300_799


def _int(data: dict[str, Any], key: str, default: object = _MISSING) -> int:
    """The whole number at ``key``: an int, an integral float or a string of digits."""
    value = data.get(key, default)
    if value is _MISSING:
        raise APIResponseError(f"the usage answer has no {key!r}")
    if isinstance(value, str) and len(value) <= 20 and value.isascii():
        value = int(value) if value.lstrip("-").isdecimal() else value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _MAX_NUMBER:
        raise APIResponseError(f"the usage answer's {key!r} is no whole number: {value!r:.40}")
    return value


def _object(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise APIResponseError(f"the usage answer's {what} is not a JSON object")
    return value


def usage_json(body: bytes, limit: int) -> dict[str, Any]:
    """The usage answer's JSON object; anything else is an `APIResponseError`."""
    if len(body) > limit:
        raise APIResponseError(f"the usage answer is larger than {limit} bytes")
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested thousands of levels deep
        parsed = None
    if not isinstance(parsed, dict):
        raise APIResponseError("the usage answer is not a JSON object")
    return parsed


def billing_cycles_from_json(body: dict[str, Any]) -> list[BillingCycleSummary]:
    """The ``billingCycles`` list of the list mode."""
    cycles = body.get("billingCycles", [])
    if not isinstance(cycles, list):
        raise APIResponseError("the usage answer's 'billingCycles' is not a list")
    return [BillingCycleSummary.from_json(_object(item, "billing cycle")) for item in cycles]


@attrs.frozen(kw_only=True)
class BillingCycleSummary:
    """One billing period of the list mode: its window and its usage."""

    period_start_unix: int
    period_end_unix: int
    app_usage: int
    api_usage: int

    @property
    def period_start(self) -> datetime:
        """The start of the period, in UTC."""
        return datetime.fromtimestamp(self.period_start_unix, tz=timezone.utc)

    @property
    def period_end(self) -> datetime:
        """The end of the period (inclusive), in UTC."""
        return datetime.fromtimestamp(self.period_end_unix, tz=timezone.utc)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillingCycleSummary:
        """From one entry of ``billingCycles``."""
        return cls(
            period_start_unix=_int(data, "periodStartUnix"),
            period_end_unix=_int(data, "periodEndUnix"),
            app_usage=_int(data, "appUsage", 0),
            api_usage=_int(data, "apiUsage", 0),
        )


@attrs.frozen(kw_only=True)
class BillingCycle(BillingCycleSummary):
    """The current (or a chosen) billing window with its included and prepaid credits.

    ``stripe_billing_synced`` is False when the window fell back to the UTC calendar month.
    """

    included_credits: int
    prepaid_credits: int
    used_included_credits: int
    remaining_included_credits: int
    stripe_billing_synced: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillingCycle:
        """From the ``billingCycle`` object."""
        summary = BillingCycleSummary.from_json(data)
        return cls(
            **attrs.asdict(summary),
            included_credits=_int(data, "includedCredits", 0),
            prepaid_credits=_int(data, "prepaidCredits", 0),
            used_included_credits=_int(data, "usedIncludedCredits", 0),
            remaining_included_credits=_int(data, "remainingIncludedCredits", 0),
            stripe_billing_synced=bool(data.get("stripeBillingSynced", False)),
        )


@attrs.frozen(kw_only=True)
class MembershipUsage:
    """The plan, its credits, and the usage of the asked month or cycle."""

    membership: str
    credits: int
    prepaid_credits: int
    app_usage: int
    api_usage: int
    billing_cycle: BillingCycle | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MembershipUsage:
        """From the endpoint's JSON; unknown fields are ignored."""
        cycle = data.get("billingCycle")
        return cls(
            membership=str(data.get("membership", "")),
            credits=_int(data, "credits", 0),
            prepaid_credits=_int(data, "prepaidCredits", 0),
            app_usage=_int(data, "app_usage", 0),
            api_usage=_int(data, "api_usage", 0),
            billing_cycle=None
            if cycle is None
            else BillingCycle.from_json(_object(cycle, "billingCycle")),
        )


def usage_params(year: int | None, month: int | None, period_start: int | None) -> dict[str, str]:
    """The usage endpoint's query, checked as the server checks it."""
    if period_start is not None and (year is not None or month is not None):
        raise InvalidInputError(
            MSG_PERIOD_WITH_CALENDAR, [("periodStartUnix", MSG_PERIOD_WITH_CALENDAR)]
        )
    params: dict[str, str] = {}
    for name, value, low, high in (("year", year, 1, 9999), ("month", month, 1, 12)):
        if value is not None:
            if not low <= value <= high:
                message = out_of_range_message(name, low, high, value)
                raise InvalidInputError(message, [(name, message)])
            params[name] = str(value)
    if period_start is not None:
        params["periodStartUnix"] = str(int(period_start))
    return params
