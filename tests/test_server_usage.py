"""Credits, usage accounting, billing cycles and the three rate limits."""

from __future__ import annotations

from datetime import datetime, timezone

import aiohttp
import pytest
from conftest import Client

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import Account, RateLimits, ServerConfig


def unix(*args: int) -> int:
    """Unix seconds of a UTC date and time."""
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())  # type: ignore[misc]


NOW = unix(2026, 3, 15, 12, 0, 0)


def fixed_clock() -> float:
    """A clock stopped at :data:`NOW`."""
    return NOW


@pytest.fixture
def billing_client(rembg_server_factory, session: aiohttp.ClientSession) -> Client:
    """A server at a fixed moment with a synced account ('s') and a calendar one ('c')."""
    accounts = [
        Account(
            api_key="s", credits=3, prepaid_credits=2, app_usage=1, billing_anchor=unix(2026, 1, 10)
        ),
        Account(api_key="c", membership="Free", credits=50),
    ]
    server = rembg_server_factory(ServerConfig(accounts=accounts, clock=fixed_clock))
    return Client(server, session)


async def test_each_keyed_call_costs_one_credit(client: Client) -> None:
    """A successful keyed call adds one to api_usage; failed and anonymous calls add nothing."""
    assert (await client.rmbg()).status == 200
    assert (await client.rmbg()).status == 200
    assert (await client.rmbg(fields={"w": "x"})).status == 400
    assert (await client.rmbg(api_key=None)).status == 200
    body = (await client.usage()).json()
    assert body["api_usage"] == 2
    assert body["app_usage"] == 0


async def test_usage_without_billing_cycle(client: Client) -> None:
    """The plain document has exactly the top-level fields; billingCycle only when asked."""
    body = (await client.usage()).json()
    assert set(body) == {"membership", "credits", "prepaidCredits", "app_usage", "api_usage"}
    assert body["membership"] == "Premium-20000"


@pytest.mark.parametrize(
    "params",
    [
        {"expand": "billing_cycle"},
        {"expand": "x,billing_cycle"},
        {"includeBillingCycle": "1"},
        {"includeBillingCycle": "true"},
    ],
    ids=["expand", "expand-list", "include-1", "include-true"],
)
async def test_billing_cycle_of_a_synced_account(
    billing_client: Client, params: dict[str, str]
) -> None:
    """The current cycle follows the anchor (10th to 9th), with the derived counts."""
    assert (await billing_client.rmbg(api_key="s")).status == 200
    body = (await billing_client.usage(api_key="s", **params)).json()
    assert body == {
        "membership": "Premium-20000",
        "credits": 3,
        "prepaidCredits": 2,
        "app_usage": 1,
        "api_usage": 1,
        "billingCycle": {
            "periodStartUnix": unix(2026, 3, 10),
            "periodEndUnix": unix(2026, 4, 10) - 1,
            "appUsage": 1,
            "apiUsage": 1,
            "includedCredits": 3,
            "prepaidCredits": 2,
            "usedIncludedCredits": 2,
            "remainingIncludedCredits": 1,
            "stripeBillingSynced": True,
        },
    }


async def test_unsynced_account_falls_back_to_the_calendar_month(billing_client: Client) -> None:
    """With no subscription anchor, the cycle is the UTC month and stripeBillingSynced false."""
    cycle = (await billing_client.usage(api_key="c", expand="billing_cycle")).json()["billingCycle"]
    assert (cycle["periodStartUnix"], cycle["periodEndUnix"]) == (
        unix(2026, 3, 1),
        unix(2026, 4, 1) - 1,
    )
    assert cycle["stripeBillingSynced"] is False


async def test_prepaid_credits_are_used_after_the_included_ones(billing_client: Client) -> None:
    """Included credits go first, then prepaid; with none left the monthly 429 comes."""
    for _ in range(4):  # 3 included (1 used by the web app) + 2 prepaid = 4 calls
        assert (await billing_client.rmbg(api_key="s")).status == 200
    body = (await billing_client.usage(api_key="s", expand="billing_cycle")).json()
    assert body["prepaidCredits"] == 0
    assert body["billingCycle"]["remainingIncludedCredits"] == 0
    answer = await billing_client.rmbg(api_key="s")
    assert answer.status == 429
    assert answer.error == "You've reached your monthly limit. Consider purchasing more credits."
    # Retry-After points at the next cycle, which starts on April 10th.
    assert int(answer.headers["Retry-After"]) == unix(2026, 4, 10) - NOW


async def test_calendar_month_query(billing_client: Client) -> None:
    """year and month select a UTC month's counters; other months are empty."""
    assert (await billing_client.rmbg(api_key="c")).status == 200
    assert (await billing_client.usage(api_key="c", year="2026", month="3")).json()[
        "api_usage"
    ] == 1
    assert (await billing_client.usage(api_key="c", year="2026", month="2")).json()[
        "api_usage"
    ] == 0
    assert (await billing_client.usage(api_key="c", month="3")).json()["api_usage"] == 1


async def test_period_start_query(billing_client: Client) -> None:
    """periodStartUnix selects one cycle's counters and window."""
    assert (await billing_client.rmbg(api_key="s")).status == 200
    start = unix(2026, 3, 10)
    body = (
        await billing_client.usage(api_key="s", periodStartUnix=str(start), expand="billing_cycle")
    ).json()
    assert (body["app_usage"], body["api_usage"]) == (1, 1)
    assert body["billingCycle"]["periodEndUnix"] == unix(2026, 4, 10) - 1
    earlier = (
        await billing_client.usage(api_key="s", periodStartUnix=str(unix(2026, 2, 10)))
    ).json()
    assert (earlier["app_usage"], earlier["api_usage"]) == (0, 0)


@pytest.mark.parametrize("other", [{"year": "2026"}, {"month": "3"}], ids=["year", "month"])
async def test_period_start_cannot_combine_with_calendar(
    billing_client: Client, other: dict[str, str]
) -> None:
    """periodStartUnix with year or month is the API's 400."""
    answer = await billing_client.usage(api_key="s", periodStartUnix="1", **other)
    assert answer.json() == {
        "error": "Cannot combine 'periodStartUnix' with 'year' or 'month'.",
        "status": 400,
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"year": "abc"}, "'year' must be an integer, got: 'abc'"),
        ({"year": "0"}, "'year' must be between 1 and 9999, got: 0"),
        ({"month": "13"}, "'month' must be between 1 and 12, got: 13"),
        (
            {"periodStartUnix": "-1"},
            "'periodStartUnix' must be between 0 and 253394352000, got: -1",
        ),
        (
            {"periodStartUnix": "414496254521"},
            "'periodStartUnix' must be between 0 and 253394352000, got: 414496254521",
        ),
    ],
)
async def test_bad_query_values(client: Client, params: dict[str, str], message: str) -> None:
    """Malformed numbers are a 400 naming the parameter."""
    assert (await client.usage(**params)).json() == {"error": message, "status": 400}


async def test_list_billing_cycles(billing_client: Client) -> None:
    """List mode returns only the cycles, newest first, ends at the next start − 1."""
    answer = await billing_client.usage(api_key="s", listBillingCycles="1", year="oops")
    assert answer.json() == {
        "billingCycles": [
            {
                "periodStartUnix": unix(2026, 3, 10),
                "periodEndUnix": unix(2026, 4, 10) - 1,
                "appUsage": 1,
                "apiUsage": 0,
            }
        ]
    }


async def test_usage_needs_a_valid_key(client: Client) -> None:
    """The usage endpoint refuses anonymous and unknown callers with 401."""
    assert (await client.usage(api_key=None)).json() == {"error": "invalid api key", "status": 401}
    assert (await client.usage(api_key="nope")).status == 401


async def test_short_term_limit(rembg_server_factory, session: aiohttp.ClientSession) -> None:
    """Past the short-term limit: 429 with the API's message and a Retry-After."""
    limits = RateLimits(short_term_requests=2, short_term_window=3600)
    client = Client(rembg_server_factory(ServerConfig(rate_limits=limits)), session)
    assert [(await client.rmbg()).status for _ in range(2)] == [200, 200]
    answer = await client.rmbg()
    assert answer.json() == {
        "error": "You're making requests too quickly, Please Upgrade or slow down.",
        "status": 429,
    }
    assert 3500 < int(answer.headers["Retry-After"]) <= 3600
    # The limit is per key: anonymous callers have their own window.
    assert (await client.rmbg(api_key=None)).status == 200


async def test_daily_anonymous_limit(rembg_server_factory, session: aiohttp.ClientSession) -> None:
    """Anonymous callers get a daily allowance; after it, 429 until the next UTC day."""
    server = rembg_server_factory(
        ServerConfig(rate_limits=RateLimits(daily_anonymous=1), clock=fixed_clock)
    )
    client = Client(server, session)
    assert (await client.rmbg(api_key=None)).status == 200
    answer = await client.rmbg(api_key=None)
    assert answer.error == "You've reached your daily limit. Please sign up for more access."
    assert int(answer.headers["Retry-After"]) == unix(2026, 3, 16) - NOW
    assert (await client.rmbg(api_key=TEST_API_KEY)).status == 200
