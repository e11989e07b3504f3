"""RedisLimiter's own rules, each in a second or less against a real Valkey server on a
loopback port: its settings and their defaults, what it reports, what a refusal stops, how it
gives back what it does not use, and how it leaves and finds Redis again (on a fake clock)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import types
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio

from rembg_async import APIStatusError, AuthenticationError, BudgetExhaustedError
from rembg_async._fleet import _limiter
from rembg_async._fleet._script import FleetScript, key_tag
from rembg_async._limits import Answer, was_refused
from rembg_async.redis import BudgetUnavailableError, RedisLimiter
from tests._valkey import Valkey

DAILY = "You have exceeded your daily limit of API calls."


@pytest.fixture
async def probe(valkey: Valkey) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the test's own, to read the fleet's state as Redis keeps it."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    yield client
    await client.aclose()


async def redis_now(client: redis.asyncio.Redis) -> float:
    """Redis' clock, in seconds."""
    seconds, micros = await client.time()
    return float(seconds + micros / 1e6)


async def field(client: redis.asyncio.Redis, namespace: str, name: str) -> float | None:
    """A field of the fleet's state (one key's, anonymous), in seconds when it is a time."""
    value = await client.hget(f"{key_tag(None, namespace)}:state", name)
    return None if value is None else int(value) / 1e6


@pytest.mark.parametrize(
    "settings",
    [
        {"requests_per_second": 0},
        {"requests_per_second": -1},
        {"max_concurrency": 0},
        {"max_credits": -1},
        {"lease": 0},
        {"fallback_rate": 0},
        {"lease": -1, "fallback_rate": 2},
    ],
)
async def test_settings_out_of_range_are_refused(valkey: Valkey, settings: dict[str, Any]) -> None:
    """A rate, lease or fallback rate that is not positive, no slot or a negative budget:
    ValueError when the limiter is made."""
    with pytest.raises(ValueError, match=r"must be|cannot be"):
        RedisLimiter.from_url(valkey.url, **settings)


async def test_the_smallest_settings_in_range_are_taken(valkey: Valkey) -> None:
    """Half a request a second, one slot, a budget of 0, half-second leases and fallback."""
    limiter = RedisLimiter.from_url(
        valkey.url,
        requests_per_second=0.5,
        max_concurrency=1,
        max_credits=0,
        lease=0.5,
        fallback_rate=0.5,
    )
    await limiter.aclose()


async def test_a_budget_of_nothing_refuses_the_first_request(
    valkey: Valkey, namespace: str
) -> None:
    """max_credits=0: acquire raises BudgetExhaustedError (0 of 0), marked as raised before
    anything was sent; one credit is spent by one success, then refused the same way (and
    the refused request is not in flight)."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_credits=0) as limiter:
        with pytest.raises(BudgetExhaustedError) as nothing:
            await limiter.acquire()
    assert (nothing.value.spent, nothing.value.max_credits) == (0, 0)
    assert was_refused(nothing.value)
    async with RedisLimiter.from_url(valkey.url, namespace=namespace + "1", max_credits=1) as one:
        await one.release(await one.acquire(), Answer(status=200))
        with pytest.raises(BudgetExhaustedError) as spent:
            await one.acquire()
        assert one.state.in_flight == 0
    assert (spent.value.spent, spent.value.max_credits) == (1, 1)


async def test_a_budget_lowered_below_what_was_spent_says_both(
    valkey: Valkey, namespace: str
) -> None:
    """Two credits spent under max_credits=2, then a member of the key with max_credits=1:
    it refuses with BudgetExhaustedError of 2 spent (the fleet's count) out of its 1."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_credits=2) as before:
        for _ in range(2):
            await before.release(await before.acquire(), Answer(status=200))
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_credits=1) as lowered:
        with pytest.raises(BudgetExhaustedError) as spent:
            await lowered.acquire()
    assert (spent.value.spent, spent.value.max_credits) == (2, 1)


@pytest.mark.parametrize(("status", "success"), [(200, True), (300, False)])
async def test_only_a_2xx_answer_is_a_success_the_fleet_learns_from(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis, status: int, success: bool
) -> None:
    """A 200 is a success the fleet counts (its first success noted in Redis); a 300 (a
    redirect, never followed) is not, as for the in-process limiter."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=status))
    assert (await field(probe, namespace, "first_success") is not None) is success


async def test_the_state_says_where_the_rate_comes_from(valkey: Valkey, namespace: str) -> None:
    """A fixed rate: "fixed", not adaptive. Learning: "none" and no rate until a 429, then
    "learned" with the rate and ceiling the fleet keeps. adaptive=False: not adaptive."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=10
    ) as fixed:
        assert repr(fixed).endswith(" unpaced connected>")
        permit = await fixed.acquire()
        state = fixed.state
        assert (state.rate, state.source, state.adaptive) == (10, "fixed", False)
        assert state.in_flight == 1
        assert repr(fixed) == f"<RedisLimiter {key_tag(None, namespace)} 10/s connected>"
        await fixed.release(permit, Answer(status=200))
        assert fixed.state.in_flight == 0
    async with RedisLimiter.from_url(valkey.url, namespace=namespace + "l") as learning:
        await learning.release(await learning.acquire(), Answer(status=200))  # no rate stated
        permit = await learning.acquire()
        state = learning.state
        assert (state.rate, state.source, state.ceiling) == (None, "none", None)
        assert state.adaptive is True
        await learning.release(permit, Answer(status=429, throttled=True))
        await learning.release(await learning.acquire(), Answer(status=200))
        state = learning.state
        assert state.source == "learned"
        assert state.rate is not None
        assert state.rate > 0
        assert state.ceiling is not None
        assert state.ceiling > 0
    async with RedisLimiter.from_url(valkey.url, adaptive=False) as plain:
        assert plain.state.adaptive is False
        assert plain.state.source == "none"


async def test_answers_are_counted(valkey: Valkey, namespace: str) -> None:
    """Three answers, one a short-term 429, and one request that got none: answered 3,
    throttled 1."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=1000
    ) as limiter:
        for answer in [Answer(status=200), None, Answer(status=429, throttled=True)]:
            await limiter.release(await limiter.acquire(), answer)
        await limiter.release(await limiter.acquire(), Answer(status=500))
        state = limiter.state
    assert (state.answered, state.throttled) == (3, 1)


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        (Answer(status=401, message="invalid api key"), 300),
        (Answer(status=402, message="payment required"), 300),
        (Answer(status=429, headers={"Retry-After": "7"}, message=DAILY), 7),
        (Answer(status=429, headers={"Retry-After": "1"}, message=DAILY), 1),
        (Answer(status=429, headers={"Retry-After": "0"}, message=DAILY), 300),
        (Answer(status=429, message=DAILY), 300),
    ],
)
async def test_a_refusal_stops_the_fleet_for_its_wait_or_the_refusal_hold(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis, answer: Answer, seconds: float
) -> None:
    """A refused key stops every member for the daily limit's Retry-After, or else for
    refusal_hold (300 s by default); the next acquire raises the server's error."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), answer)
        with pytest.raises(APIStatusError) as raised:
            await limiter.acquire()
        stopped_at = await redis_now(probe)
        stop = await field(probe, namespace, "stop")
    assert stop is not None
    assert stopped_at - 1 < stop - seconds <= stopped_at
    assert raised.value.status == answer.status
    assert raised.value.message == answer.message
    assert raised.value.headers["Retry-After"] == str(seconds)  # what is left, rounded up
    assert was_refused(raised.value)


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=429, headers={"Retry-After": "5"}, throttled=True),
        Answer(status=400, message="bad image"),
        Answer(status=200),
        None,
    ],
)
async def test_answers_that_do_not_refuse_the_key_stop_nothing(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis, answer: Answer | None
) -> None:
    """A short-term 429, a 400, a success and no answer at all leave no stop behind."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), answer)
    assert await field(probe, namespace, "stop") is None


async def test_the_default_hold_is_at_most_a_minute(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """max_hold defaults to 60 s: a hold-off of 90 s is ignored, one of 59 s is written."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter:
        await limiter.hold_off(90)
        assert await field(probe, namespace, "hold") is None
        await limiter.hold_off(59)
        now = await redis_now(probe)
        hold = await field(probe, namespace, "hold")
    assert hold is not None
    assert now - 1 < hold - 59 <= now


async def test_the_default_lease_is_thirty_seconds(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """A slot taken under max_concurrency is leased for 30 s unless the limiter says else."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_concurrency=4) as limiter:
        permit = await limiter.acquire()
        now = await redis_now(probe)
        ends = await probe.zscore(f"{key_tag(None, namespace)}:slots", permit.token)
        await limiter.release(permit, Answer(status=200))
    assert ends is not None
    assert now - 1 < ends / 1e6 - 30 <= now


async def test_a_cancelled_sleeper_gives_its_slot_back_at_once(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """Two slots and a budget at 2/s: the second request sleeps half a second for its start;
    cancelled, its slot and credit are free in Redis, it costs nothing and is not in flight."""
    slots = f"{key_tag(None, namespace)}:slots"
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, max_concurrency=2, max_credits=5, requests_per_second=2
    ) as limiter:
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())
        while await probe.zcard(slots) < 2:
            await asyncio.sleep(0.005)
        assert limiter.state.in_flight == 2
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert await probe.zcard(slots) == 1
        assert await probe.zcard(f"{key_tag(None, namespace)}:credits") == 1
        assert await field(probe, namespace, "spent") is None
        assert limiter.state.in_flight == 1
        await limiter.release(first, Answer(status=200))


async def test_a_member_for_an_api_key_keeps_its_own_state_on_the_same_settings(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """for_api_key gives a member under that key's tag, at the limiter's settings; closing it
    leaves the shared connection open."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=3
    ) as limiter:
        member = limiter.for_api_key("some-key-0123456789")
        permit = await member.acquire()
        await member.release(permit, Answer(status=200))
        await member.aclose()
        assert member.state.rate == 3
        assert repr(member).startswith(f"<RedisLimiter {key_tag('some-key-0123456789', namespace)}")
        await limiter.release(await limiter.acquire(), Answer(status=200))
    assert await probe.exists(f"{key_tag('some-key-0123456789', namespace)}:state")


async def clients(client: redis.asyncio.Redis) -> int:
    """How many connections the server has."""
    return int((await client.info("clients"))["connected_clients"])


async def test_a_limiter_closes_only_the_connection_it_made(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """On a caller's Redis client, aclose leaves its connection open (the same one answers
    after); from_url's connections are closed with the limiter, by leaving ``async with``."""
    users = redis.asyncio.Redis.from_url(valkey.url, single_connection_client=True)
    try:
        before = await users.client_id()
        async with RedisLimiter(users, namespace=namespace) as limiter:
            await limiter.release(await limiter.acquire(), Answer(status=200))
        assert await users.client_id() == before
    finally:
        await users.aclose()
    baseline = await clients(probe)
    async with RedisLimiter.from_url(valkey.url, namespace=namespace) as made:
        await made.release(await made.acquire(), Answer(status=200))
        assert await clients(probe) > baseline
    for _ in range(200):  # the server notices closed sockets on its next turn
        if await clients(probe) <= baseline:
            break
        await asyncio.sleep(0.01)
    assert await clients(probe) <= baseline
    with pytest.raises(RuntimeError, match="closed"):
        await made.acquire()


async def test_without_redis_it_paces_locally_and_asks_again_after_reconnect_after(
    own_valkey: Valkey,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis gone: a request goes on locally (not in flight in the fleet; a hold-off then
    holds the local pacing); Redis is asked again no sooner than reconnect_after (1 s by
    default) after the failure, on the limiter's clock, and then found again, which is
    logged once."""
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_limiter, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    async with RedisLimiter.from_url(
        own_valkey.url, namespace=namespace, fallback_rate=1000
    ) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        own_valkey.stop()
        await limiter.release(await limiter.acquire(), Answer(status=200))
        assert not limiter.connected
        assert limiter.state.in_flight == 0
        assert "Redis unreachable" in repr(limiter)
        await limiter.hold_off(0.6)
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(limiter.acquire(), 0.2)
        own_valkey.start()
        clock.now = 1000.999
        await limiter.release(await limiter.acquire(), Answer(status=200))
        assert not limiter.connected  # Redis is not tried before its time
        clock.now = 1001.0
        with caplog.at_level(logging.WARNING, logger="rembg_async"):
            for _ in range(3):
                await limiter.release(await limiter.acquire(), Answer(status=200))
        assert limiter.connected
    assert [r.getMessage() for r in caplog.records if "answers again" in r.getMessage()] == [
        "Redis answers again: the fleet's shared limits are back"
    ]


async def test_closing_wakes_a_caller_waiting_on_the_local_fallback(
    own_valkey: Valkey, namespace: str
) -> None:
    """Redis gone, one slot: a second caller waits for the first's local permit; closing the
    limiter ends its wait with RuntimeError."""
    async with RedisLimiter.from_url(
        own_valkey.url, namespace=namespace, max_concurrency=1, fallback_rate=1000
    ) as limiter:
        own_valkey.stop()
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())
        done, _ = await asyncio.wait([second], timeout=0.1)
        assert not done
        await limiter.release(first, Answer(status=200))
        third = await asyncio.wait_for(second, 5)  # the local slot came back
        waiting = asyncio.ensure_future(limiter.acquire())
        done, _ = await asyncio.wait([waiting], timeout=0.1)
        assert not done
        await limiter.aclose()
        with pytest.raises(RuntimeError):
            await asyncio.wait_for(waiting, 5)
        await limiter.release(third, Answer(status=200))


async def wait_until(predicate: Any, seconds: float = 5.0) -> None:
    """Until ``predicate()`` is true (an event this test cannot await), or fail."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "waited in vain"
        await asyncio.sleep(0.005)


async def test_the_state_shows_a_hold_heard_of_from_another_member(
    valkey: Valkey, namespace: str
) -> None:
    """One member holds the fleet off for 5 s: the other, listening, reports it in
    ``held_for`` (5 s or a little less); before it, 0."""
    async with (
        RedisLimiter.from_url(valkey.url, namespace=namespace, requests_per_second=100) as one,
        RedisLimiter.from_url(valkey.url, namespace=namespace, requests_per_second=100) as other,
    ):
        await other.release(await other.acquire(), Answer(status=200))  # listening now
        assert other.state.held_for == 0
        await one.hold_off(5)
        await wait_until(lambda: other.state.held_for > 0)
        assert 4 < other.state.held_for <= 5


async def test_leases_of_requests_under_way_are_renewed(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """With 0.3 s leases, a request under way for a second keeps its slot: its lease is
    renewed every 0.1 s and never runs out."""
    slots = f"{key_tag(None, namespace)}:slots"
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, max_concurrency=1, lease=0.3
    ) as limiter:
        permit = await limiter.acquire()
        first = await probe.zscore(slots, permit.token)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            ends = await probe.zscore(slots, permit.token)
            assert ends is not None
            assert ends / 1e6 > await redis_now(probe)
            await asyncio.sleep(0.02)
        assert ends is not None
        assert first is not None
        assert ends > first
        await limiter.release(permit, Answer(status=200))


async def test_a_budget_that_cannot_be_checked_refuses_with_what_it_knows(
    own_valkey: Valkey, namespace: str
) -> None:
    """Redis gone, max_credits=5: acquire raises BudgetUnavailableError, a
    BudgetExhaustedError of 0 spent out of 5 that says why, raised before anything was sent."""
    async with RedisLimiter.from_url(own_valkey.url, namespace=namespace, max_credits=5) as made:
        own_valkey.stop()
        with pytest.raises(BudgetUnavailableError) as raised:
            await made.acquire()
    assert (raised.value.spent, raised.value.max_credits) == (0, 5)
    assert str(raised.value).startswith("the shared credit budget of 5 cannot be checked")
    assert was_refused(raised.value)


async def test_redis_lost_before_a_start_is_confirmed_the_request_goes_on_locally(
    own_valkey: Valkey, namespace: str
) -> None:
    """A request asleep until its reserved start finds Redis gone when it confirms it: it
    starts on the local fallback, and its reservation no longer counts as in flight."""
    async with RedisLimiter.from_url(
        own_valkey.url, namespace=namespace, requests_per_second=4, fallback_rate=1000
    ) as limiter:
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())  # reserves a start 0.25 s ahead
        await wait_until(lambda: limiter.state.in_flight == 2)
        own_valkey.stop()
        permit = await asyncio.wait_for(second, 5)
        assert permit.token == _limiter.LOCAL
        assert not limiter.connected
        assert limiter.state.in_flight == 1
        await limiter.release(permit, Answer(status=200))
        await limiter.release(first, Answer(status=200))


async def script_calls(client: redis.asyncio.Redis) -> int:
    """EVAL and EVALSHA calls the server has run."""
    stats = await client.info("commandstats")
    counts = [stats.get(f"cmdstat_{name}", {}) for name in ("eval", "evalsha")]
    return sum(count.get("calls", 0) - count.get("failed_calls", 0) for count in counts)


async def test_a_caller_waiting_for_a_slot_does_not_poll_redis(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """One slot, taken: a second caller waits for news of a free one (or a second), asking
    Redis once in a third of a second rather than again and again."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_concurrency=1) as one:
        first = await one.acquire()
        before = await script_calls(probe)
        second = asyncio.ensure_future(one.acquire())
        done, _ = await asyncio.wait([second], timeout=0.3)
        assert not done
        assert await script_calls(probe) - before <= 2
        await one.release(first, Answer(status=200))
        await one.release(await asyncio.wait_for(second, 5), Answer(status=200))


async def test_a_reservation_voided_at_its_start_is_no_longer_in_flight(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """A hold written with no news while a request sleeps until its start: it reserves
    afresh, and only its new reservation counts as in flight."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=4
    ) as limiter:
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())  # a start 0.25 s ahead
        await wait_until(lambda: limiter.state.in_flight == 2)
        held_until = await redis_now(probe) + 0.3
        await probe.hset(f"{key_tag(None, namespace)}:state", "hold", round(held_until * 1e6))
        permit = await asyncio.wait_for(second, 5)
        assert permit.started_at >= held_until
        assert limiter.state.in_flight == 2
        await limiter.release(permit, Answer(status=200))
        await limiter.release(first, Answer(status=200))


async def test_a_request_cancelled_while_confirming_gives_its_reservation_back(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled during the one Redis call at its start (Redis slow to answer), a request
    gives its slot back and is no longer in flight (its lease is not renewed for ever)."""
    asking = asyncio.Event()

    async def slow_confirm(*args: object) -> bool:
        asking.set()
        await asyncio.sleep(3600)
        return True

    slots = f"{key_tag(None, namespace)}:slots"
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=10, max_concurrency=2
    ) as limiter:
        first = await limiter.acquire()
        monkeypatch.setattr(FleetScript, "confirm", slow_confirm)
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.wait_for(asking.wait(), 5)
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert limiter.state.in_flight == 1
        assert await probe.zcard(slots) == 1
        await limiter.release(first, Answer(status=200))


async def test_redis_lost_when_settling_or_holding_is_noticed(
    own_valkey: Valkey, namespace: str
) -> None:
    """Redis gone: a release, or a hold-off, that cannot reach it marks the limiter as
    disconnected (the next request paces locally instead of trying Redis first)."""
    async with RedisLimiter.from_url(own_valkey.url, namespace=namespace) as limiter:
        permit = await limiter.acquire()
        own_valkey.stop()
        await limiter.release(permit, Answer(status=200))
        assert not limiter.connected
    own_valkey.start()
    async with RedisLimiter.from_url(own_valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        own_valkey.stop()
        await limiter.hold_off(1)
        assert not limiter.connected


async def test_one_caller_at_a_time_tries_a_frozen_redis_again(
    own_valkey: Valkey, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis frozen: the first call times out (1 s by default) and requests go on locally.
    When it is time to try again, one caller tries it while the others go on locally; that
    caller cancelled, the next one tries again, and finds Redis back."""
    clock = types.SimpleNamespace(now=1000.0)
    monkeypatch.setattr(_limiter, "time", types.SimpleNamespace(monotonic=lambda: clock.now))
    async with RedisLimiter.from_url(
        own_valkey.url, namespace=namespace, fallback_rate=1000
    ) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        own_valkey.freeze()
        started = time.monotonic()
        await limiter.release(await limiter.acquire(), Answer(status=200))
        assert time.monotonic() - started < 2.0  # the socket timeout, 1 s, not more
        assert not limiter.connected
        clock.now += 1.0
        trying = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)  # it is on its way to Redis
        other = await asyncio.wait_for(limiter.acquire(), 0.5)
        assert other.token == _limiter.LOCAL
        assert not trying.done()
        trying.cancel()
        with pytest.raises(asyncio.CancelledError):
            await trying
        own_valkey.thaw()
        await limiter.release(other, Answer(status=200))
        await limiter.release(await asyncio.wait_for(limiter.acquire(), 5), Answer(status=200))
        assert limiter.connected


async def test_a_slot_freed_without_news_is_found_within_a_second(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """One slot, leased for 30 s: when it is freed with no news (as when the message is
    lost), the caller waiting for it asks again within a second, not at the lease's end."""
    slots = f"{key_tag(None, namespace)}:slots"
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_concurrency=1) as one:
        first = await one.acquire()
        second = asyncio.ensure_future(one.acquire())
        done, _ = await asyncio.wait([second], timeout=0.1)
        assert not done
        await probe.zrem(slots, first.token)  # freed, and nobody told
        started = time.monotonic()
        permit = await asyncio.wait_for(second, 5)
        assert time.monotonic() - started < 1.5
        await one.release(permit, Answer(status=200))
        await one.release(first, Answer(status=200))


async def subscribed(probe: redis.asyncio.Redis, channel: str) -> None:
    """Until a member listens to the fleet's news."""
    while (await probe.pubsub_numsub(channel))[0][1] < 1:
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("news", ["hold 5000000", "cut 0"])
async def test_news_wakes_a_sleeper_at_once(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis, news: str
) -> None:
    """A request asleep until a start 2 s ahead hears of a hold that covers its start, or of
    a cut: it gives its reservation back and reserves afresh at once (two script calls
    within half a second), not at its start."""
    channel = f"{key_tag(None, namespace)}:events"
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=0.5
    ) as limiter:
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())  # a start 2 s ahead
        await wait_until(lambda: limiter.state.in_flight == 2)
        await asyncio.wait_for(subscribed(probe, channel), 5)
        before = await script_calls(probe)
        await probe.publish(channel, news)
        deadline = time.monotonic() + 0.5
        while await script_calls(probe) - before < 2:
            assert time.monotonic() < deadline, "the sleeper slept on"
            await asyncio.sleep(0.005)
        second.cancel()
        await asyncio.gather(second, return_exceptions=True)
        await limiter.release(first, Answer(status=200))


async def test_closing_wakes_a_sleeper(valkey: Valkey, namespace: str) -> None:
    """A request asleep until a start 2 s ahead: closing the limiter ends its wait at once
    with RuntimeError, as for the in-process limiter (it does not reserve again)."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    try:
        async with RedisLimiter(client, namespace=namespace, requests_per_second=0.5) as limiter:
            await limiter.acquire()
            second = asyncio.ensure_future(limiter.acquire())
            await wait_until(lambda: limiter.state.in_flight == 2)
        with pytest.raises(RuntimeError, match="closed"):
            await asyncio.wait_for(second, 1.0)
    finally:
        await client.aclose()


async def test_news_of_a_freed_slot_wakes_the_waiter_at_once(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """One slot: the caller waiting for it starts as soon as it is released (the news), well
    before its next poll; after that, waiting again does not poll Redis either (the news
    heard before is not taken for a new one)."""
    async with RedisLimiter.from_url(valkey.url, namespace=namespace, max_concurrency=1) as one:
        first = await one.acquire()
        second = asyncio.ensure_future(one.acquire())
        done, _ = await asyncio.wait([second], timeout=0.1)
        assert not done
        started = time.monotonic()
        await one.release(first, Answer(status=200))
        third = await asyncio.wait_for(second, 5)
        assert time.monotonic() - started < 0.5
        before = await script_calls(probe)
        fourth = asyncio.ensure_future(one.acquire())
        done, _ = await asyncio.wait([fourth], timeout=0.3)
        assert not done
        assert await script_calls(probe) - before <= 2
        await one.release(third, Answer(status=200))
        await one.release(await asyncio.wait_for(fourth, 5), Answer(status=200))


async def test_closing_ends_the_background_work(valkey: Valkey, namespace: str) -> None:
    """Once aclose returns, the member's listener and lease renewer have ended (no task is
    left pending for the loop to destroy)."""
    current = asyncio.current_task()
    before = asyncio.all_tasks()
    client = redis.asyncio.Redis.from_url(valkey.url)
    limiter = RedisLimiter(client, namespace=namespace, max_concurrency=2)
    await limiter.release(await limiter.acquire(), Answer(status=200))
    assert any(not task.done() for task in asyncio.all_tasks() - before - {current})
    await limiter.aclose()
    assert all(task.done() for task in asyncio.all_tasks() - before - {current})
    await client.aclose()


async def test_news_is_subscribed_again_once_a_second_while_redis_is_away(
    own_valkey: Valkey, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis gone: the listener tries to subscribe again after a second, not in a busy loop
    nor after two: in 1.5 s, it fails at once, then once more."""
    async with RedisLimiter.from_url(own_valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        with caplog.at_level(logging.DEBUG, logger="rembg_async"):
            own_valkey.stop()
            await asyncio.sleep(1.5)  # the time in which it tries (this is what is counted)
    tries = [r for r in caplog.records if r.getMessage().startswith("fleet news:")]
    assert len(tries) == 2


async def test_a_stop_written_while_asleep_is_raised_at_the_start(
    valkey: Valkey, namespace: str, probe: redis.asyncio.Redis
) -> None:
    """A refusal of the key written in Redis with no news while a request sleeps until its
    start: at its start it raises the server's error, with what is left of the stop."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=4
    ) as limiter:
        first = await limiter.acquire()
        second = asyncio.ensure_future(limiter.acquire())  # a start 0.25 s ahead
        await wait_until(lambda: limiter.state.in_flight == 2)
        stop = round((await redis_now(probe) + 30) * 1e6)
        fields = {"stop": stop, "stop_status": 401, "stop_message": "invalid api key"}
        await probe.hset(f"{key_tag(None, namespace)}:state", mapping=fields)  # type: ignore[arg-type]
        with pytest.raises(AuthenticationError) as raised:
            await asyncio.wait_for(second, 5)
        assert limiter.state.in_flight == 1
        await limiter.release(first, Answer(status=200))
    assert raised.value.message == "invalid api key"
    assert raised.value.headers["Retry-After"] == "30"
    assert was_refused(raised.value)


async def test_a_dead_members_short_lease_is_waited_for_no_longer_than_it_lasts(
    valkey: Valkey, namespace: str
) -> None:
    """One slot held by a member that dies, with 0.3 s leases: the caller waiting for it
    asks again when the lease ends (Redis' hint), not a second later."""
    settings: dict[str, Any] = {"namespace": namespace, "max_concurrency": 1, "lease": 0.3}
    async with RedisLimiter.from_url(valkey.url, **settings) as other:
        dead = RedisLimiter.from_url(valkey.url, **settings)
        await dead.acquire()
        await dead.aclose()  # nobody renews its lease
        started = time.monotonic()
        permit = await asyncio.wait_for(other.acquire(), 5)
        assert time.monotonic() - started < 0.8
        await other.release(permit, Answer(status=200))


def test_the_keys_of_an_api_key_are_stable() -> None:
    """Where one API key's state lives is fixed (members of two versions share a fleet):
    the namespace, then the first 20 hex digits of a SHA-256 as the hash tag."""
    digest = hashlib.sha256(b"rembg-async:some-key").hexdigest()[:20]
    assert key_tag("some-key", "ns") == f"rembg:ns:{{{digest}}}"
    assert key_tag(None, "") == "rembg:{" + hashlib.sha256(b"rembg-async:").hexdigest()[:20] + "}"
