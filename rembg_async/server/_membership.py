"""``GET /api/membership-usage``: plan, credits, usage by month or billing cycle."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from aiohttp import web

from .._contract import (
    MSG_PERIOD_WITH_CALENDAR,
    TRUE_VALUES,
    FieldProblem,
    integer_problem,
    out_of_range_message,
)
from ._accounts import AccountState, Usage, Window
from ._state import STATE, APIError, authenticate, json_response

#: The latest period start whose window (and the next) still falls in year 9999, where dates end.
MAX_PERIOD_START = int(datetime(9999, 10, 1, tzinfo=timezone.utc).timestamp())


async def handle_membership_usage(request: web.Request) -> web.Response:
    """The account's plan, credits and usage, or (list mode) its billing cycles."""
    state = request.app[STATE]
    account = authenticate(request, state, required=True)
    assert account is not None  # required=True never returns None
    if _flag(request.query, "listBillingCycles"):
        return json_response({"billingCycles": billing_cycles(account, state.now())})
    return json_response(usage_body(account, request.query, state.now()))


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "").lower() in TRUE_VALUES


def usage_body(account: AccountState, query: Mapping[str, str], now: int) -> dict[str, object]:
    """The usage document the query asks for, or the API's 400 listing every problem.

    **[decision]** the messages for malformed numbers follow the style of ``/rmbg``'s.
    """
    problems: list[FieldProblem] = []
    year = _integer(query, "year", 1, 9999, problems)
    month = _integer(query, "month", 1, 12, problems)
    period_start = _integer(query, "periodStartUnix", 0, MAX_PERIOD_START, problems)
    if problems:
        raise APIError(400, problems[0].message, problems=problems)
    if period_start is not None:
        if year is not None or month is not None:
            raise APIError(400, MSG_PERIOD_WITH_CALENDAR)
        window = account.window_starting(period_start)
        usage = account.by_cycle.get(window.start, Usage())
    else:
        window = account.window_at(now)
        today = datetime.fromtimestamp(now, tz=timezone.utc)
        usage = account.by_month.get((year or today.year, month or today.month), Usage())
    body: dict[str, object] = {
        "membership": account.account.membership,
        "credits": account.account.credits,
        "prepaidCredits": account.prepaid,
        "app_usage": usage.app,
        "api_usage": usage.api,
    }
    flags = {flag.strip() for flag in query.get("expand", "").split(",")}
    if "billing_cycle" in flags or _flag(query, "includeBillingCycle"):
        body["billingCycle"] = _billing_cycle(account, window)
    return body


def _integer(
    query: Mapping[str, str], name: str, low: int, high: int, problems: list[FieldProblem]
) -> int | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        problems.append(integer_problem(name, raw))
        return None
    if not low <= value <= high:
        problems.append(FieldProblem(name, out_of_range_message(name, low, high, value)))
        return None
    return value


def _cycle(account: AccountState, window: Window) -> dict[str, int]:
    """One window and its usage: an entry of the cycle list, the start of ``billingCycle``."""
    usage = account.by_cycle.get(window.start, Usage())
    return {
        "periodStartUnix": window.start,
        "periodEndUnix": window.end,
        "appUsage": usage.app,
        "apiUsage": usage.api,
    }


def _billing_cycle(account: AccountState, window: Window) -> dict[str, object]:
    cycle = _cycle(account, window)
    used = cycle["appUsage"] + cycle["apiUsage"]
    included = account.account.credits
    return {
        **cycle,
        "includedCredits": included,
        "prepaidCredits": account.prepaid,
        "usedIncludedCredits": used,
        "remainingIncludedCredits": max(0, included - used),
        "stripeBillingSynced": account.account.billing_anchor is not None,
    }


def billing_cycles(account: AccountState, now: int) -> list[dict[str, int]]:
    """Every cycle with usage, and the current one, newest first."""
    starts = {start for start, usage in account.by_cycle.items() if usage.app or usage.api}
    starts.add(account.window_at(now).start)
    return [_cycle(account, account.window_starting(s)) for s in sorted(starts, reverse=True)]
