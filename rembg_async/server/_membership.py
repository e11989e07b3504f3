"""``GET /api/membership-usage``: plan, credits, usage by month or billing cycle."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

import attrs
from aiohttp import web

from .._contract import MSG_PERIOD_WITH_CALENDAR, FieldProblem, out_of_range_message
from ._accounts import AccountState, Window
from ._auth import authenticate
from ._state import STATE, APIError, json_response

_TRUE = frozenset({"1", "true"})
#: The latest period start whose window (and the next) still falls in year 9999, where dates end.
MAX_PERIOD_START = int(datetime(9999, 10, 1, tzinfo=timezone.utc).timestamp())


@attrs.frozen(kw_only=True)
class UsageQuery:
    """What a usage request asks for."""

    year: int | None = None
    month: int | None = None
    period_start: int | None = None
    billing_cycle: bool = False


async def handle_membership_usage(request: web.Request) -> web.Response:
    """The account's plan, credits and usage, or (list mode) its billing cycles."""
    state = request.app[STATE]
    account = authenticate(request, state, required=True)
    assert account is not None  # required=True never returns None
    now = state.now()
    if request.query.get("listBillingCycles", "").lower() in _TRUE:
        return json_response({"billingCycles": billing_cycles(account, now)})
    return json_response(usage_body(account, parse_usage_query(request.query), now))


def parse_usage_query(query: Mapping[str, str]) -> UsageQuery:
    """The query's parameters, or the API's 400 listing every problem.

    **[decision]** the messages for malformed numbers follow the style of ``/rmbg``'s.
    """
    problems: list[FieldProblem] = []
    year = _integer(query, "year", 1, 9999, problems)
    month = _integer(query, "month", 1, 12, problems)
    period_start = _integer(query, "periodStartUnix", 0, MAX_PERIOD_START, problems)
    if problems:
        raise APIError(400, problems[0].message, problems=problems)
    if period_start is not None and (year is not None or month is not None):
        raise APIError(400, MSG_PERIOD_WITH_CALENDAR)
    flags = {flag.strip() for flag in query.get("expand", "").split(",")}
    billing_cycle = (
        "billing_cycle" in flags or query.get("includeBillingCycle", "").lower() in _TRUE
    )
    return UsageQuery(
        year=year, month=month, period_start=period_start, billing_cycle=billing_cycle
    )


def _integer(
    query: Mapping[str, str], name: str, low: int, high: int, problems: list[FieldProblem]
) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        problems.append(FieldProblem(name, f"'{name}' must be an integer, got: '{raw}'"))
        return None
    if not low <= value <= high:
        problems.append(FieldProblem(name, out_of_range_message(name, low, high, value)))
        return None
    return value


def usage_body(account: AccountState, query: UsageQuery, now: int) -> dict[str, object]:
    """The usage document for ``query``."""
    if query.period_start is not None:
        window = account.window_starting(query.period_start)
        usage = account.by_cycle.get(window.start)
    else:
        window = account.window_at(now)
        year_month = _calendar_month(query, now)
        usage = account.by_month.get(year_month)
    body: dict[str, object] = {
        "membership": account.account.membership,
        "credits": account.account.credits,
        "prepaidCredits": account.prepaid,
        "app_usage": usage.app if usage else 0,
        "api_usage": usage.api if usage else 0,
    }
    if query.billing_cycle:
        body["billingCycle"] = billing_cycle_body(account, window)
    return body


def _calendar_month(query: UsageQuery, now: int) -> tuple[int, int]:
    today = datetime.fromtimestamp(now, tz=timezone.utc)
    return query.year or today.year, query.month or today.month


def billing_cycle_body(account: AccountState, window: Window) -> dict[str, object]:
    """The ``billingCycle`` object for one window."""
    usage = account.by_cycle.get(window.start)
    app, api = (usage.app, usage.api) if usage else (0, 0)
    included = account.account.credits
    return {
        "periodStartUnix": window.start,
        "periodEndUnix": window.end,
        "appUsage": app,
        "apiUsage": api,
        "includedCredits": included,
        "prepaidCredits": account.prepaid,
        "usedIncludedCredits": app + api,
        "remainingIncludedCredits": max(0, included - app - api),
        "stripeBillingSynced": account.synced,
    }


def billing_cycles(account: AccountState, now: int) -> list[dict[str, int]]:
    """Every cycle with usage, and the current one, newest first."""
    starts = {start for start, usage in account.by_cycle.items() if usage.app or usage.api}
    starts.add(account.window_at(now).start)
    cycles = []
    for start in sorted(starts, reverse=True):
        window = account.window_starting(start)
        usage = account.by_cycle.get(start)
        cycles.append(
            {
                "periodStartUnix": window.start,
                "periodEndUnix": window.end,
                "appUsage": usage.app if usage else 0,
                "apiUsage": usage.api if usage else 0,
            }
        )
    return cycles
