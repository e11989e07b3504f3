"""Membership usage and billing cycles through the client, typed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from conftest import make_image

from rembg_async import (
    AsyncRembg,
    AuthenticationError,
    BillingCycle,
    BillingCycleSummary,
    InvalidInputError,
    MembershipUsage,
)
from rembg_async.server import Account, LocalServer, ServerConfig

ANCHOR = int(datetime(2026, 1, 10, tzinfo=timezone.utc).timestamp())
NOW = int(datetime(2026, 3, 15, 12, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def server(rembg_server_factory) -> LocalServer:
    """A server at a fixed moment, with a synced account."""
    account = Account(
        api_key="s",
        membership="Pro",
        credits=100,
        prepaid_credits=5,
        app_usage=2,
        billing_anchor=ANCHOR,
    )
    return rembg_server_factory(ServerConfig(accounts=[account], clock=lambda: NOW))


async def test_usage_and_billing_cycle(server: LocalServer) -> None:
    """Usage counts the client's own calls; the cycle is typed, with datetimes."""
    async with AsyncRembg("s", base_url=server.url) as client:
        await (await client.remove(make_image())).cleanup()
        usage = await client.membership_usage(billing_cycle=True)
    start = int(datetime(2026, 3, 10, tzinfo=timezone.utc).timestamp())
    end = int(datetime(2026, 4, 10, tzinfo=timezone.utc).timestamp()) - 1
    assert usage == MembershipUsage(
        membership="Pro",
        credits=100,
        prepaid_credits=5,
        app_usage=2,
        api_usage=1,
        billing_cycle=BillingCycle(
            period_start_unix=start,
            period_end_unix=end,
            app_usage=2,
            api_usage=1,
            included_credits=100,
            prepaid_credits=5,
            used_included_credits=3,
            remaining_included_credits=97,
            stripe_billing_synced=True,
        ),
    )
    assert usage.billing_cycle is not None
    assert usage.billing_cycle.period_start == datetime(2026, 3, 10, tzinfo=timezone.utc)


async def test_month_and_period_queries(server: LocalServer) -> None:
    """year/month and period_start select other windows."""
    async with AsyncRembg("s", base_url=server.url) as client:
        await (await client.remove(make_image())).cleanup()
        assert (await client.membership_usage(year=2026, month=3)).api_usage == 1
        assert (await client.membership_usage(year=2026, month=2)).api_usage == 0
        [cycle] = await client.billing_cycles()
        assert isinstance(cycle, BillingCycleSummary)
        chosen = await client.membership_usage(period_start=cycle.period_start_unix)
        assert (chosen.app_usage, chosen.api_usage) == (2, 1)
        assert chosen.billing_cycle is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"period_start": 1, "year": 2026},
            "Cannot combine 'periodStartUnix' with 'year' or 'month'.",
        ),
        ({"month": 13}, "'month' must be between 1 and 12, got: 13"),
        ({"year": 0}, "'year' must be between 1 and 9999, got: 0"),
    ],
)
async def test_bad_queries_are_refused_locally(
    server: LocalServer, kwargs: dict[str, int], message: str
) -> None:
    """What the server would refuse is refused before sending, in its words."""
    async with AsyncRembg("s", base_url=server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.membership_usage(**kwargs)
    assert str(caught.value) == message


async def test_usage_needs_a_key(server: LocalServer) -> None:
    """Anonymous usage calls are the server's 401."""
    async with AsyncRembg(None, base_url=server.url) as client:
        with pytest.raises(AuthenticationError):
            await client.membership_usage()


async def test_account_host_can_differ(server: LocalServer, rembg_server_factory) -> None:
    """account_base_url sends usage calls to another host than removals."""
    other = rembg_server_factory(
        ServerConfig(accounts=[Account(api_key="s", membership="Elsewhere")])
    )
    async with AsyncRembg("s", base_url=server.url, account_base_url=other.url) as client:
        assert (await client.membership_usage()).membership == "Elsewhere"


async def test_unknown_fields_are_ignored() -> None:
    """Fields the hosted API may add later do not break parsing."""
    usage = MembershipUsage.from_json({"membership": "X", "credits": 1, "newField": {"a": 1}})
    assert usage.membership == "X"
    assert usage.billing_cycle is None
