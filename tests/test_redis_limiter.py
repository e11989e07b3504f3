"""RedisLimiter: processes sharing one API key share its rate, hold-offs, stops, credit budget
and concurrency, through a real Valkey (or Redis) server on a loopback port."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio
from conftest import make_image

from rembg_async import (
    AsyncRembg,
    AuthenticationError,
    BudgetExhaustedError,
    RateLimitError,
)
from rembg_async._fleet._script import FleetScript, Go, Settings, key_tag
from rembg_async._limits import Answer, Permit, RateController
from rembg_async.redis import BudgetUnavailableError, RedisLimiter
from rembg_async.server import Account, Fault, FaultInjector, LocalServer, RateLimits, ServerConfig
from tests._valkey import Valkey

ROOT = Path(__file__).parent.parent
KEY = "fleet-test-key-0123456789"


@pytest.fixture
async def limiter(valkey: Valkey, namespace: str) -> AsyncIterator[RedisLimiter]:
    """A limiter on the module's server, in this test's namespace, at a fixed 10/s."""
    async with RedisLimiter.from_url(
        valkey.url, namespace=namespace, requests_per_second=10
    ) as made:
        yield made


def images(folder: Path, count: int, *, bad: int = 0) -> list[Path]:
    """``count`` small PNGs in ``folder``, then ``bad`` files the server refuses (not images)."""
    folder.mkdir(exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"image-{number:03d}.png"
        path.write_bytes(make_image((24 + number, 16)))
        paths.append(path)
    for number in range(bad):
        path = folder / f"broken-{number:03d}.png"
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
        paths.append(path)
    return paths


def fleet(
    valkey: Valkey, server: LocalServer, shares: list[list[Path]], *options: str, key: str = KEY
) -> list[dict[str, object]]:
    """``examples/fleet_worker.py`` once per share, all at once; their JSON lines (or
    ``{"killed": True}`` for one that died)."""
    command = [sys.executable, str(ROOT / "examples" / "fleet_worker.py"), "--redis", valkey.url]
    command += ["--base-url", server.url, "--api-key", key, *options]
    processes = [
        subprocess.Popen([*command, *map(str, share)], stdout=subprocess.PIPE, text=True)
        for share in shares
    ]
    lines: list[dict[str, object]] = []
    for process in processes:
        output = process.communicate(timeout=120)[0].strip().splitlines()
        lines.append(json.loads(output[-1]) if output else {"killed": True})
    return lines


async def api_usage(server: LocalServer, key: str = KEY) -> int:
    """Credits the server charged the key this month, from its usage endpoint."""
    async with AsyncRembg(key, base_url=server.url) as client:
        return (await client.membership_usage()).api_usage


async def test_processes_share_one_rate_with_starts_spaced_on_redis_clock(
    valkey: Valkey, namespace: str
) -> None:
    """Three processes, 12 permits each at a fixed 20/s for the fleet: the starts Redis gave
    them, merged, are never closer than 1/20 s, and each took one script call to reserve."""
    script = str(ROOT / "tests" / "_fleet_member.py")
    command = [sys.executable, script, valkey.url, namespace, "12", "20"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(3)]
    starts = sorted(
        start for process in processes for start in json.loads(process.communicate()[0])
    )
    assert len(starts) == 36
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert min(gaps) >= 1 / 20 - 1e-6
    assert max(gaps) < 1.0  # first come, first served: nobody starved


async def test_each_request_is_one_reservation_and_one_settlement(
    limiter: RedisLimiter, valkey: Valkey
) -> None:
    """No polling: 20 requests make 59 script calls, however long they wait: each reserves
    and settles, and the 19 that sleep until their start confirm it once."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    try:
        before = await script_calls(client)
        permits = await asyncio.gather(*(limiter.acquire() for _ in range(20)))
        for permit in permits:
            await limiter.release(permit, Answer(status=200))
        assert await script_calls(client) - before == 59
    finally:
        await client.aclose()


async def script_calls(client: redis.asyncio.Redis) -> int:
    """EVAL and EVALSHA calls the server has run (not those refused with NOSCRIPT, which
    redis-py repeats once it has loaded the script)."""
    stats = await client.info("commandstats")
    counts = [stats.get(f"cmdstat_{name}", {}) for name in ("eval", "evalsha")]
    return sum(count.get("calls", 0) - count.get("failed_calls", 0) for count in counts)


async def test_a_fleet_of_processes_learns_the_limit_and_fails_nothing(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """Three worker processes against a server admitting 5 a second: every image made, the
    limit learned once for all, few 429s."""
    limits = RateLimits(short_term_requests=5, short_term_window=1.0, daily_anonymous=0)
    config = ServerConfig(accounts=[Account(api_key=KEY)], rate_limits=limits)
    paths = images(tmp_path / "in", 45)
    with LocalServer(config) as server:
        lines = fleet(valkey, server, [paths[n::3] for n in range(3)], "--namespace", namespace)
    assert [line["failed"] for line in lines] == [[], [], []]
    assert sum(int(str(line["made"])) for line in lines) == 45
    answered = sum(int(str(line["answered"])) for line in lines)
    throttled = sum(int(str(line["throttled"])) for line in lines)
    assert throttled / answered <= 0.2


async def test_a_hold_off_found_by_one_member_holds_every_member(
    valkey: Valkey, namespace: str
) -> None:
    """A 429 with Retry-After to one member (fixed rate: every 429's wait holds the fleet)
    wakes another member asleep until its start: it starts after the hold, and the starts
    after it stay spaced (no stampede)."""
    async with (
        RedisLimiter.from_url(valkey.url, namespace=namespace, requests_per_second=4) as one,
        RedisLimiter.from_url(valkey.url, namespace=namespace, requests_per_second=4) as other,
    ):
        throttled = await one.acquire()
        sleepers = [asyncio.ensure_future(other.acquire()) for _ in range(3)]
        await asyncio.sleep(0.05)  # they have reserved starts 0.25, 0.5 and 0.75 s ahead
        answer = Answer(status=429, headers={"Retry-After": "1"}, throttled=True)
        await one.release(throttled, answer)
        hold = await read_field(valkey, namespace, "hold")
        starts = sorted([(await sleeper).started_at for sleeper in sleepers])
    assert starts[0] >= hold
    assert min(later - earlier for earlier, later in itertools.pairwise(starts)) >= 0.25 - 1e-6


async def test_a_member_that_never_hears_of_a_hold_finds_it_at_its_start(
    valkey: Valkey, namespace: str
) -> None:
    """A hold written in Redis while a member sleeps until its reserved start, with no news of
    it (as when pub/sub lags or loses it): the member asks at its start, and starts after."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    state = f"{key_tag(None, namespace)}:state"
    try:
        async with RedisLimiter.from_url(
            valkey.url, namespace=namespace, requests_per_second=2
        ) as limiter:
            first = await limiter.acquire()
            second = asyncio.ensure_future(limiter.acquire())  # reserves a start 0.5 s ahead

            async def reserved() -> None:
                while int(await client.hget(state, "tat") or 0) < (first.started_at + 1) * 1e6:
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(reserved(), 5)
            seconds, micros = await client.time()
            held_until = seconds + micros / 1e6 + 1.0
            await client.hset(state, "hold", str(round(held_until * 1e6)))  # no news sent
            permit = await second
            await limiter.release(first, Answer(status=200))
            await limiter.release(permit, Answer(status=200))
    finally:
        await client.aclose()
    assert permit.started_at >= held_until


async def asleep(client: redis.asyncio.Redis, namespace: str, channel: str, until: float) -> None:
    """Until the member has subscribed to the fleet's news and Redis has reserved starts up to
    ``until`` (seconds of Redis time)."""
    state = f"{key_tag(None, namespace)}:state"
    while (await client.pubsub_numsub(channel))[0][1] < 1 or int(
        await client.hget(state, "tat") or 0
    ) < until * 1e6:
        await asyncio.sleep(0.005)


async def test_429s_inside_a_hold_announce_nothing(valkey: Valkey, namespace: str) -> None:
    """Ten 429s whose waits end inside a hold already written publish no news (a burst would
    wake every sleeper of every member ten times); the one that extends the hold does."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    channel = f"{key_tag(None, namespace)}:events"
    pubsub = client.pubsub()
    try:
        async with RedisLimiter.from_url(
            valkey.url, namespace=namespace, requests_per_second=4
        ) as limiter:
            await pubsub.subscribe(channel)
            for number, wait in enumerate(["5", *["1"] * 10, "20"]):
                answer = Answer(status=429, headers={"Retry-After": wait}, throttled=True)
                await limiter.release(Permit(started_at=0.0, token=f"{number}"), answer)
            news = await asyncio.wait_for(heard_until_a_long_hold(pubsub), 5)
    finally:
        await pubsub.aclose()
        await client.aclose()
    assert [text.split()[0] for text in news] == ["hold", "hold"]


async def heard_until_a_long_hold(pubsub: redis.asyncio.client.PubSub) -> list[str]:
    """The fleet's news, up to the first hold of more than 10 s."""
    news: list[str] = []
    while not news or float(news[-1].split()[1]) < 10e6:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
        if message is not None:  # None: nothing yet, or the subscription's confirmation
            news.append(message["data"].decode())
    return news


async def test_news_of_a_hold_wakes_only_sleepers_whose_start_is_inside_it(
    valkey: Valkey, namespace: str
) -> None:
    """Four requests asleep until starts after a hold: ten announcements of holds that end
    before those starts wake none of them (no script call), one that covers them wakes each
    once (it gives its reservation back and reserves afresh: two calls each)."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    channel = f"{key_tag(None, namespace)}:events"
    try:
        async with RedisLimiter.from_url(
            valkey.url, namespace=namespace, requests_per_second=4
        ) as limiter:
            await limiter.hold_off(2)
            seconds, micros = await client.time()
            now = seconds + micros / 1e6
            sleepers = [asyncio.ensure_future(limiter.acquire()) for _ in range(4)]
            await asyncio.wait_for(asleep(client, namespace, channel, now + 2 + 0.9), 5)
            before = await script_calls(client)
            for _ in range(10):
                await client.publish(channel, "hold 1000000")  # ends a second before the first
            await limiter.hold_off(20)  # written and announced: one call
            await asyncio.wait_for(asleep(client, namespace, channel, now + 20 + 0.9), 5)
            calls = await script_calls(client) - before
            for sleeper in sleepers:
                sleeper.cancel()
            await asyncio.gather(*sleepers, return_exceptions=True)
    finally:
        await client.aclose()
    assert calls == 1 + 2 * 4


class TwoThrottles(FaultInjector):
    """The test's two 429s: the 30th request gets ``Retry-After: 1`` (the fleet's first cut),
    the first one 1.5 s later ``Retry-After: 2``; notes when each was chosen (wall clock)."""

    def __init__(self) -> None:
        super().__init__(enabled=True)
        self.arrivals = 0
        self.refused: list[float] = []

    def choose(self, header: str | None) -> Fault | None:
        """A 429 for the two chosen requests, nothing for the others."""
        now = time.time()
        self.arrivals += 1
        if self.arrivals == 30 or (len(self.refused) == 1 and now >= self.refused[0] + 1.5):
            self.refused.append(now)
            return Fault(status=429, retry_after=str(len(self.refused)))
        return None


async def test_no_member_starts_inside_a_hold_written_before_its_permit(
    valkey: Valkey, namespace: str
) -> None:
    """Four processes learning the rate together, four requests at a time each: after a first
    cut, a 429 with Retry-After: 2 to one of them holds them all. Redis holds the fleet for 2 s
    from when that member settled it, and every request any member started inside those 2 s
    had its permit granted before the hold was written (none was granted inside it)."""
    faults = TwoThrottles()
    limits = RateLimits(short_term_requests=1000, daily_anonymous=0)
    config = ServerConfig(accounts=[Account(api_key=KEY)], rate_limits=limits, faults=True)
    member = [sys.executable, str(ROOT / "tests" / "_fleet_member.py"), "--requests"]
    with LocalServer(config) as server:
        server.call(lambda: setattr(server.state, "faults", faults))
        command = [*member, valkey.url, namespace, server.url, KEY, "6"]
        processes = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(4)]
        logs = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert len(faults.refused) == 2
    held_until = await read_field(valkey, namespace, "hold")
    assert held_until >= faults.refused[1] + 2  # the hold is the 2 s one, written after the 429
    written = held_until - 2
    starts = [(granted, started) for log in logs for granted, started in log]
    inside = [granted for granted, started in starts if written <= started < held_until]
    assert [granted for granted in inside if granted >= written] == []
    assert any(started >= held_until for _, started in starts)  # the fleet went on after it


@pytest.mark.parametrize("ceiling", [1.0, 5.0, 20.0])
async def test_the_script_paces_as_the_in_process_controller(
    valkey: Valkey, namespace: str, ceiling: float
) -> None:
    """The script's copy of the curve gives RateController's rate after a cut, on the way
    back, at the plateau and while probing above the ceiling."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    settings = Settings(
        requests_per_second=None,
        adaptive=True,
        max_concurrency=None,
        max_credits=None,
        max_hold=60.0,
        lease=30.0,
    )
    script = FleetScript(client, key_tag(None, namespace), settings)
    controller = RateController(ceiling=ceiling, cut_at=0.0, epoch=1)
    try:
        for since in (0.0, 2.0, 10.0, 60.0, 81.0, 83.0):
            seconds, micros = await client.time()
            now = seconds * 1_000_000 + micros
            cut_at = now - round(since * 1_000_000)
            fields = {"ceiling": ceiling, "cut_at": cut_at, "epoch": 1, "tat": 0}
            await client.hset(f"{script.tag}:state", mapping=fields)
            reply = await script.reserve(uuid.uuid4().hex)
            seconds, micros = await client.time()
            late = (seconds * 1_000_000 + micros - now) / 1e6  # the script ran within this
            assert isinstance(reply, Go)
            # The curve only rises with time: the script's rate lies between the controller's
            # at the two readings of Redis' clock (not at one: a loaded machine lags by ms).
            low, high = controller.rate(since), controller.rate(since + late)
            assert low is not None
            assert high is not None
            assert low * (1 - 1e-9) <= reply.rate <= high * (1 + 1e-9), (since, late)
    finally:
        await client.aclose()


async def read_field(valkey: Valkey, namespace: str, field: str, key: str | None = None) -> float:
    """A field of the fleet's state, in seconds of Redis time when it is a time."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    try:
        [name] = await client.keys(f"rembg:{namespace}:*:state")
        value = await client.hget(name, field)
    finally:
        await client.aclose()
    assert value is not None
    return int(value) / 1e6


async def test_a_refused_key_stops_every_member(valkey: Valkey, namespace: str) -> None:
    """One client meets 401; another process's batch with that key then starts nothing:
    it stops with the same error and every input is left for later."""
    config = ServerConfig(accounts=[Account(api_key=KEY)])
    with LocalServer(config) as server:
        async with (
            RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter,
            AsyncRembg("not-the-key-0123456789", base_url=server.url, limiter=limiter) as first,
        ):
            with pytest.raises(AuthenticationError):
                await first.remove(make_image())
            async with AsyncRembg(
                "not-the-key-0123456789", base_url=server.url, limiter=limiter
            ) as second:
                inputs = [make_image((20 + n, 20)) for n in range(5)]
                async with second.remove_many(inputs) as run:
                    items = [item async for item in run]
                left = [value async for value in run.remaining]
                assert second.rate_limit.answered == 0
    assert items == []
    assert isinstance(run.stopped, AuthenticationError)
    assert run.stopped.message == "invalid api key"
    assert left == inputs


async def test_a_monthly_limit_stops_the_fleet_until_it_says(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """An account out of credits: the first worker's 429 (monthly, Retry-After to next month)
    stops the other processes before they send anything; another key is not stopped."""
    config = ServerConfig(accounts=[Account(api_key=KEY, credits=0), Account(api_key=KEY + "2")])
    paths = images(tmp_path / "in", 6)
    with LocalServer(config) as server:
        async with (
            RedisLimiter.from_url(valkey.url, namespace=namespace) as limiter,
            AsyncRembg(KEY, base_url=server.url, limiter=limiter) as client,
        ):
            with pytest.raises(RateLimitError) as first:
                await client.remove(paths[0])
        lines = fleet(valkey, server, [paths[:3], paths[3:]], "--namespace", namespace)
        other = fleet(valkey, server, [paths], "--namespace", namespace, key=KEY + "2")
    assert first.value.scope == "monthly"
    assert [(line["made"], line["stopped"], line["remaining"]) for line in lines] == [
        (0, "RateLimitError", 3),
        (0, "RateLimitError", 3),
    ]
    assert [line["answered"] for line in lines] == [0, 0]
    assert other[0]["made"] == 6


async def test_the_fleet_spends_exactly_its_budget(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """max_credits=10 for three processes with 8 images each: the server charged exactly 10,
    every worker stopped on the spent budget, and the 14 unsent inputs are left."""
    paths = images(tmp_path / "in", 24)
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        shares = [paths[n::3] for n in range(3)]
        lines = fleet(valkey, server, shares, "--namespace", namespace, "--max-credits", "10")
        charged = await api_usage(server)
    assert charged == 10
    assert sum(int(str(line["made"])) for line in lines) == 10
    # A worker may finish its share before the budget runs out; the others stop on it.
    assert {line["stopped"] for line in lines} - {None} == {"BudgetExhaustedError"}
    assert sum(int(str(line["remaining"])) for line in lines) == 14


async def test_credits_the_server_did_not_charge_come_back(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """With max_credits=4, four refused files (400, not charged) sent first, then four good
    images: all four good ones are made (one at a time, so that the order is the test's: with
    more at once, the good ones may spend the budget before a refused file is sent)."""
    paths = images(tmp_path / "in", 4, bad=4)
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        async with (
            RedisLimiter.from_url(valkey.url, namespace=namespace, max_credits=4) as limiter,
            AsyncRembg(KEY, base_url=server.url, limiter=limiter) as client,
        ):
            async with client.remove_many(paths[4:] + paths[:4], concurrency=1) as run:
                items = [item async for item in run]
            for item in items:
                if item.result is not None:
                    await item.result.cleanup()
        charged = await api_usage(server)
    assert sorted(item.ok for item in items) == [False] * 4 + [True] * 4
    assert charged == 4


async def test_a_member_killed_mid_request_never_lets_the_fleet_overspend(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """A worker SIGKILLed mid-request keeps its credits leased; when the leases run out they
    count as spent, so the fleet charges at most max_credits; the survivors finish."""
    paths = images(tmp_path / "in", 30)
    budget = ["--namespace", namespace, "--max-credits", "12", "--lease", "1"]
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        command_crash = [*budget, "--crash-after", "2"]
        crashed = fleet(valkey, server, [paths[:10]], *command_crash)
        survivors = fleet(valkey, server, [paths[10:20], paths[20:]], *budget)
        charged = await api_usage(server)
    assert crashed == [{"killed": True}]
    assert charged <= 12
    assert {line["stopped"] for line in survivors} - {None} == {"BudgetExhaustedError"}


async def test_concurrency_is_capped_fleet_wide_and_a_dead_members_slot_expires(
    valkey: Valkey, namespace: str
) -> None:
    """max_concurrency=2 over two members: a third request waits for a release; a member
    that dies holding a slot frees it when its lease runs out."""
    # A fixed rate: no slow start, whose window would cap the fleet at one request at first.
    settings = {
        "namespace": namespace,
        "max_concurrency": 2,
        "lease": 0.5,
        "requests_per_second": 100,
    }
    async with (
        RedisLimiter.from_url(valkey.url, **settings) as one,
        RedisLimiter.from_url(valkey.url, **settings) as other,
    ):
        first, second = await one.acquire(), await one.acquire()
        third = asyncio.ensure_future(other.acquire())
        done, _ = await asyncio.wait([third], timeout=0.2)
        assert not done
        await one.release(first, Answer(status=200))
        await asyncio.wait_for(third, 5)
        await one.aclose()  # dies with `second` held: nobody renews its lease
        fourth = await asyncio.wait_for(other.acquire(), 5)
        await other.release(third.result(), Answer(status=200))
        await other.release(fourth, Answer(status=200))
    assert second.token != fourth.token


async def test_a_killed_redis_falls_back_to_a_local_rate_and_comes_back(
    own_valkey: Valkey, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis killed: the next request still goes (paced locally), the limiter says so and
    logs it; Redis back: the member uses it again by itself."""
    async with RedisLimiter.from_url(
        own_valkey.url, namespace=namespace, reconnect_after=0.1
    ) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        own_valkey.stop()
        with caplog.at_level(logging.WARNING, logger="rembg_async"):
            permit = await asyncio.wait_for(limiter.acquire(), 5)
        assert not limiter.connected
        assert limiter.state.rate == 1.0
        assert "Redis cannot be reached" in caplog.text
        await limiter.release(permit, Answer(status=200))
        own_valkey.start()
        await asyncio.sleep(0.2)  # past reconnect_after
        await limiter.release(await asyncio.wait_for(limiter.acquire(), 5), Answer(status=200))
        assert limiter.connected


async def test_a_frozen_redis_never_hangs_a_request(own_valkey: Valkey, namespace: str) -> None:
    """SIGSTOP: the socket timeout (1 s) ends the call, and the request goes on locally."""
    async with RedisLimiter.from_url(own_valkey.url, namespace=namespace) as limiter:
        await limiter.release(await limiter.acquire(), Answer(status=200))
        own_valkey.freeze()
        try:
            permit = await asyncio.wait_for(limiter.acquire(), 5)
            await asyncio.wait_for(limiter.release(permit, Answer(status=200)), 5)
        finally:
            own_valkey.thaw()
    assert not limiter.connected


async def test_the_budget_fails_closed_while_redis_is_away(
    own_valkey: Valkey, namespace: str
) -> None:
    """With max_credits and Redis gone, a batch spends nothing: it stops on the unavailable
    budget with every input left."""
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        async with (
            RedisLimiter.from_url(own_valkey.url, namespace=namespace, max_credits=5) as limiter,
            AsyncRembg(KEY, base_url=server.url, limiter=limiter) as client,
        ):
            own_valkey.stop()
            inputs = [make_image((20 + n, 20)) for n in range(3)]
            async with client.remove_many(inputs) as run:
                items = [item async for item in run]
            left = [value async for value in run.remaining]
        charged = await api_usage(server)
    assert items == []
    assert isinstance(run.stopped, BudgetUnavailableError)
    assert isinstance(run.stopped, BudgetExhaustedError)
    assert left == inputs
    assert charged == 0


async def test_keys_hold_a_hash_of_the_api_key_never_the_key(
    valkey: Valkey, namespace: str
) -> None:
    """Every key is under the namespace and one hash tag; the API key appears nowhere."""
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        async with (
            RedisLimiter.from_url(valkey.url, namespace=namespace, max_credits=3) as limiter,
            AsyncRembg(KEY, base_url=server.url, limiter=limiter) as client,
        ):
            await (await client.remove(make_image())).cleanup()
    client_ = redis.asyncio.Redis.from_url(valkey.url)
    try:
        names = await client_.keys(f"rembg:{namespace}:*")
        values = [await client_.dump(name) for name in names]
    finally:
        await client_.aclose()
    assert len({name.split(b"}")[0] for name in names}) == 1  # one hash tag: one Cluster slot
    assert all(KEY.encode() not in blob for blob in [*names, *values] if blob)


def test_the_cli_shares_its_limits_through_redis(
    valkey: Valkey, namespace: str, tmp_path: Path
) -> None:
    """``rembg-async remove --redis URL`` (or $REMBG_REDIS_URL) makes its images through the
    fleet's limiter: the fleet's state appears in Redis."""
    paths = images(tmp_path / "in", 2)
    with LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server:
        command = [sys.executable, "-m", "rembg_async", "remove", *map(str, paths), "-q"]
        command += ["-o", str(tmp_path / "out"), "--base-url", server.url, "--api-key", KEY]
        env = {**os.environ, "REMBG_REDIS_URL": valkey.url}
        flagged = subprocess.run([*command, "--redis", valkey.url], capture_output=True, text=True)
        from_env = subprocess.run([*command, "--redo"], env=env, capture_output=True, text=True)
    assert flagged.returncode == 0, flagged.stderr
    assert from_env.returncode == 0, from_env.stderr
    assert sorted(path.name for path in (tmp_path / "out").glob("*.webp")) == [
        "image-000.webp",
        "image-001.webp",
    ]
    successes = asyncio.run(count_successes(valkey))
    assert successes >= 4


async def count_successes(valkey: Valkey) -> int:
    """Successes recorded in Redis, for the un-namespaced fleets."""
    client = redis.asyncio.Redis.from_url(valkey.url)
    try:
        total = 0
        for name in await client.keys("rembg:{*}:admitted"):
            total += await client.zcard(name)
        return total
    finally:
        await client.aclose()
