"""The result cache through the client, against a real local server: what each call costs
(counted from the server's usage endpoint), what a hit hands over, and what is never stored."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async import (
    APIConnectionError,
    AsyncRembg,
    Base64Image,
    FolderCache,
    ImageBytes,
    ImageFile,
    ProgressEvent,
    Rembg,
    RemoveOptions,
    ResultCache,
    ServerError,
    rembg,
)
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import Fault, LocalServer, RateLimits, ServerConfig

PNG = make_image((40, 30), "PNG")
OTHER = make_image((40, 30), "PNG", subject=(20, 20, 200))


@pytest.fixture
def server(rembg_server_factory: Any) -> LocalServer:
    """No rate limits, faults on demand."""
    limits = RateLimits(short_term_requests=0, daily_anonymous=0)
    started: LocalServer = rembg_server_factory(ServerConfig(faults=True, rate_limits=limits))
    return started


class DictCache:
    """A user's own cache: a dict behind the two methods of the protocol."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}
        self.gets = 0

    async def get(self, key: str) -> bytes | None:
        self.gets += 1
        return self.entries.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.entries[key] = value


async def spent(client: AsyncRembg) -> int:
    """Credits the server has charged the test key."""
    return (await client.membership_usage()).api_usage


def client_of(server: LocalServer, cache: Any, **more: Any) -> AsyncRembg:
    """A client of ``server`` with ``cache``, retries off unless asked."""
    return AsyncRembg(TEST_API_KEY, base_url=server.url, cache=cache, **more)


async def test_same_image_twice_costs_one(server: LocalServer, tmp_path: Path) -> None:
    """The second remove() of the same image is a hit: same bytes, cached=True, no credit."""
    async with client_of(server, tmp_path / "cache") as client:
        first = await client.remove(PNG, return_bytes=True)
        second = await client.remove(PNG, return_bytes=True)
        assert await spent(client) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.data == first.data
    assert second.content_type == first.content_type == "image/webp"


async def test_same_bytes_under_another_name_cost_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    """A path, bytes, base64 and a file object of the same bytes share one entry."""
    image = tmp_path / "a.png"
    image.write_bytes(PNG)
    copy = tmp_path / "elsewhere" / "b.png"
    copy.parent.mkdir()
    copy.write_bytes(PNG)
    async with client_of(server, tmp_path / "cache") as client:
        results = [await client.remove(image, return_bytes=True)]
        results.append(await client.remove(copy, return_bytes=True))
        results.append(
            await client.remove({"base64": base64.b64encode(PNG).decode()}, return_bytes=True)
        )
        with copy.open("rb") as file:
            results.append(await client.remove(file, return_bytes=True))
        assert await spent(client) == 1
    assert [result.cached for result in results] == [False, True, True, True]


async def test_other_options_cost_one_more(server: LocalServer, tmp_path: Path) -> None:
    """Options that change the answer make another key; the same options given otherwise
    (a dict, the default format named) do not."""
    async with client_of(server, tmp_path / "cache") as client:
        await client.remove(PNG, return_bytes=True)
        png = await client.remove(PNG, RemoveOptions(format="png"), return_bytes=True)
        again = await client.remove(PNG, {"format": "png"}, return_bytes=True)
        default = await client.remove(PNG, RemoveOptions(format="webp"), return_bytes=True)
        assert await spent(client) == 2
    assert (png.cached, again.cached, default.cached) == (False, True, True)
    assert again.content_type == "image/png"


async def test_sixteen_identical_calls_at_once_cost_one(
    server: LocalServer, tmp_path: Path
) -> None:
    """Sixteen identical calls at once send one request; the other fifteen are hits."""
    async with client_of(server, tmp_path / "cache") as client:
        results = await asyncio.gather(*(client.remove(PNG, return_bytes=True) for _ in range(16)))
        assert await spent(client) == 1
    assert sorted(result.cached for result in results) == [False] + [True] * 15
    assert len({result.data for result in results}) == 1


async def test_a_failure_is_not_shared_and_not_cached(server: LocalServer, tmp_path: Path) -> None:
    """The first of four identical calls meets a 503 (no retries): it alone fails; the
    others then try on their own, and one request of theirs serves them all."""
    server.faults.push(Fault(status=503))
    cache = DictCache()
    async with client_of(server, cache, max_retries=0) as client:
        outcomes = await asyncio.gather(
            *(client.remove(PNG, return_bytes=True) for _ in range(4)), return_exceptions=True
        )
        assert await spent(client) == 1
    errors = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], ServerError)
    results = [outcome for outcome in outcomes if isinstance(outcome, ImageBytes)]
    assert sorted(result.cached for result in results) == [False, True, True]
    assert len(cache.entries) == 1


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fault(status=500), id="an-error-status"),
        pytest.param(Fault(truncate=True), id="a-truncated-body"),
        pytest.param(Fault(garbage=True), id="no-image"),
        pytest.param(Fault(content_type="image/png"), id="another-type-than-declared"),
    ],
)
async def test_what_is_never_stored(server: LocalServer, fault: Fault) -> None:
    """An error, a body cut short, bytes that are no image, or an image of another type than
    its Content-Type: none is stored, whether the call fails or not; the sound answer that
    follows is."""
    server.faults.push(fault)
    cache = DictCache()
    async with client_of(server, cache, max_retries=0) as client:
        with contextlib.suppress(ServerError, APIConnectionError):
            await client.remove(PNG, return_bytes=True)
        assert cache.entries == {}
        sound = await client.remove(PNG, return_bytes=True)
    assert not sound.cached
    assert len(cache.entries) == 1


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda entry: entry[: len(entry) - 10], id="truncated"),
        pytest.param(lambda entry: entry[:-1] + bytes([entry[-1] ^ 1]), id="a-bit-flipped"),
        pytest.param(lambda entry: b"", id="empty"),
        pytest.param(lambda entry: entry[:20], id="header-cut"),
    ],
)
async def test_a_damaged_entry_is_fetched_again_never_served(
    server: LocalServer, tmp_path: Path, damage: Any
) -> None:
    """A damaged entry in the folder is a miss: the image is fetched (one more credit),
    served whole, and the entry replaced by a sound one that serves the next call."""
    folder = tmp_path / "cache"
    async with client_of(server, folder) as client:
        first = await client.remove(PNG, return_bytes=True)
        (entry,) = (path for path in folder.rglob("*") if path.is_file())
        entry.write_bytes(damage(entry.read_bytes()))
        second = await client.remove(PNG, return_bytes=True)
        third = await client.remove(PNG, return_bytes=True)
        assert await spent(client) == 2
    assert (second.cached, third.cached) == (False, True)
    assert second.data == third.data == first.data


async def test_a_hit_in_every_sink(server: LocalServer, tmp_path: Path) -> None:
    """A hit lands where a download would: a temporary file, the output path (its suffix
    choosing the format), base64; each says cached."""
    async with client_of(server, tmp_path / "cache") as client:
        made = await client.remove(PNG, output_path=tmp_path / "first.png")
        temporary = await client.remove(PNG, RemoveOptions(format="png"))
        saved = await client.remove(PNG, output_path=tmp_path / "out" / "cut.png")
        encoded = await client.remove(PNG, {"format": "png", "returnBase64": True})
        assert await spent(client) == 1
    assert isinstance(temporary, ImageFile)
    assert temporary.cached
    assert temporary.temporary
    assert temporary.output_image_path.suffix == ".png"
    assert temporary.output_image_path.read_bytes() == made.output_image_path.read_bytes()
    assert saved.cached
    assert not saved.temporary
    assert saved.output_image_path.read_bytes() == made.output_image_path.read_bytes()
    assert isinstance(encoded, Base64Image)
    assert encoded.cached
    assert encoded.base64_image.startswith("data:image/png;base64,")
    await temporary.cleanup()


async def test_progress_on_a_hit_is_a_complete_download(
    server: LocalServer, tmp_path: Path
) -> None:
    """A hit's download progress ends with loaded == total (the image's size); nothing is
    uploaded."""
    async with client_of(server, tmp_path / "cache") as client:
        made = await client.remove(PNG, return_bytes=True)
        up: list[ProgressEvent] = []
        down: list[ProgressEvent] = []
        hit = await client.remove(
            PNG, return_bytes=True, on_upload_progress=up.append, on_download_progress=down.append
        )
    assert hit.cached
    assert up == []
    assert all(event.download and not event.upload for event in down)
    assert down[-1].loaded == down[-1].total == made.size
    assert down[-1].progress == 1.0


async def test_stream_hit(server: LocalServer, tmp_path: Path) -> None:
    """stream() stores what it streamed once read whole, and serves a hit as a stream."""
    async with client_of(server, tmp_path / "cache") as client:
        async with client.stream(PNG) as first:
            body = await first.read()
        down: list[ProgressEvent] = []
        async with client.stream(PNG, on_download_progress=down.append) as second:
            assert second.cached
            assert second.size == len(body)
            assert second.content_type == "image/webp"
            again = b"".join([chunk async for chunk in second.iter_chunks(100)])
        made = await client.remove(PNG, return_bytes=True)
        assert await spent(client) == 1
    assert not first.cached
    assert again == body == made.data
    assert made.cached
    assert down[-1].loaded == down[-1].total == len(body)


async def test_a_stream_input_is_keyed_on_its_content(server: LocalServer, tmp_path: Path) -> None:
    """A stream input is digested as it is spooled: the same bytes streamed again are a hit,
    and a miss still sends them whole."""

    async def chunks(data: bytes) -> Any:
        for start in range(0, len(data), 7):
            yield data[start : start + 7]

    async with client_of(server, tmp_path / "cache") as client:
        first = await client.remove(chunks(PNG), return_bytes=True)
        second = await client.remove(chunks(PNG), return_bytes=True)
        other = await client.remove(chunks(OTHER), return_bytes=True)
        assert await spent(client) == 2
    assert (first.cached, second.cached, other.cached) == (False, True, False)


async def test_a_users_cache(server: LocalServer) -> None:
    """Any object with async get/put is a ResultCache; what it holds is our framed entry."""
    cache = DictCache()
    assert isinstance(cache, ResultCache)
    async with client_of(server, cache) as client:
        first = await client.remove(PNG, return_bytes=True)
        second = await client.remove(PNG, return_bytes=True)
        assert await spent(client) == 1
    ((key, entry),) = cache.entries.items()
    assert len(key) == 64
    assert entry.startswith(b"RBGCACHE")
    assert entry.endswith(first.data)
    assert second.cached


async def test_memory_fsspec_cache(server: LocalServer) -> None:
    """A memory:// URL is an fsspec cache, shared by two clients."""
    pytest.importorskip("fsspec")
    import secrets

    url = f"memory://cache-{secrets.token_hex(4)}"
    async with client_of(server, url) as client:
        await client.remove(PNG, return_bytes=True)
    async with client_of(server, url) as client:
        hit = await client.remove(PNG, return_bytes=True)
        assert await spent(client) == 1
    assert hit.cached


async def test_a_hit_into_a_remote_output(server: LocalServer, tmp_path: Path) -> None:
    """A hit for a remote output_path is put into its store, as a download would be."""
    fsspec = pytest.importorskip("fsspec")
    import secrets

    folder = f"memory://hit-out-{secrets.token_hex(4)}"
    async with client_of(server, tmp_path / "cache") as client:
        first = await client.remove(PNG, output_path=f"{folder}/a.png")
        second = await client.remove(PNG, output_path=f"{folder}/b.png")
        assert await spent(client) == 1
    assert (first.cached, second.cached) == (False, True)
    assert second.url == f"{folder}/b.png"
    memory = fsspec.filesystem("memory")
    assert memory.cat_file(f"{folder}/b.png") == memory.cat_file(f"{folder}/a.png")
    memory.rm(folder, recursive=True)


async def test_remove_many_into_a_fresh_folder_with_a_warm_cache_costs_nothing(
    server: LocalServer, tmp_path: Path
) -> None:
    """A batch re-run into a new output folder is served by the cache: every item made,
    cached, no credit, even with max_credits=0 (a hit reserves nothing)."""
    inputs = []
    for index, image in enumerate((PNG, OTHER)):
        path = tmp_path / "in" / f"{index}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(image)
        inputs.append(path)
    cache = FolderCache(tmp_path / "cache")
    async with client_of(server, cache) as client:
        first = [
            item
            async for item in client.remove_many(
                inputs, output_dir=tmp_path / "a", root=tmp_path / "in"
            )
        ]
        again = [
            item
            async for item in client.remove_many(
                inputs,
                output_dir=tmp_path / "b",
                root=tmp_path / "in",
                max_credits=0,
                manifest=tmp_path / "manifest.jsonl",
            )
        ]
        assert await spent(client) == 2
    assert [item.cached for item in first] == [False, False]
    assert all(item.ok and item.cached and item.credits == 0 for item in again)
    assert all(item.attempts == 0 for item in again)
    assert sorted(path.name for path in (tmp_path / "b").glob("*.webp")) == ["0.webp", "1.webp"]
    assert (tmp_path / "manifest.jsonl").read_text().count('"cached": true') == 2


def test_the_sync_twin(server: LocalServer, tmp_path: Path) -> None:
    """Rembg(cache=...) serves the second call from the cache, its file cleaned up plainly."""
    with Rembg(TEST_API_KEY, base_url=server.url, cache=tmp_path / "cache") as client:
        first = client.remove(PNG)
        second = client.remove(PNG)
        assert client.membership_usage().api_usage == 1
    assert (first.cached, second.cached) == (False, True)
    first.cleanup()
    second.cleanup()


async def test_the_one_shot_function(server: LocalServer, tmp_path: Path) -> None:
    """rembg(cache=...) made twice pays once."""
    results = [
        await rembg(api_key=TEST_API_KEY, input_image=PNG, base_url=server.url, cache=tmp_path)
        for _ in range(2)
    ]
    assert [result.cached for result in results] == [False, True]
    for result in results:
        await result.cleanup()


async def test_no_cache_by_default(
    server: LocalServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without cache= nothing is kept, whatever $REMBG_CACHE says (the CLI reads it, the
    library does not): the same image twice costs two."""
    monkeypatch.setenv("REMBG_CACHE", str(tmp_path / "cache"))
    async with AsyncRembg(TEST_API_KEY, base_url=server.url) as client:
        results = [await client.remove(PNG, return_bytes=True) for _ in range(2)]
        assert await spent(client) == 2
    assert [result.cached for result in results] == [False, False]
