"""The result cache's rules without a server: the key's canonical form, the framing that
verifies every entry, and the folder and fsspec backends (eviction, age, atomic writes)."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
import pickle
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image
from hypothesis import given
from hypothesis import strategies as st

from rembg_async import FolderCache, FsspecCache, InvalidInputError, RemoveOptions, ResultCache
from rembg_async._cache import CacheSeam, Turn, as_cache, cache_key, frame, unframe
from rembg_async._cache._backends import evict
from rembg_async._cache._frame import MAGIC, VERSION, expired, stored_at

PNG = make_image((8, 8), "PNG")
DIGEST = hashlib.sha256(PNG).hexdigest()
API = "https://api.rembg.com/rmbg"


def _valid(fields: dict[str, Any]) -> bool:
    try:
        RemoveOptions(**fields)
    except InvalidInputError:
        return False
    return True


options = (
    st.fixed_dictionaries(
        {
            "format": st.sampled_from([None, "png", "jpeg", "jpg", "webp", "bmp"]),
            "w": st.one_of(st.none(), st.integers(1, 4000)),
            "h": st.one_of(st.none(), st.integers(1, 4000)),
            "exact_resize": st.booleans(),
            "mask": st.booleans(),
            "bg_color": st.one_of(st.none(), st.sampled_from(["#ffffff", "#000000", "#ff0000"])),
            "angle": st.sampled_from([0, 90, 180, 270]),
            "expand": st.booleans(),
        }
    )
    .filter(_valid)
    .map(lambda fields: RemoveOptions(**fields))
)


@given(options, st.randoms())
def test_the_same_options_in_any_order_make_the_same_key(
    chosen: RemoveOptions, shuffler: Any
) -> None:
    """The fields' order never matters, nor does naming a default."""
    fields = list(chosen.form_fields().items())
    shuffler.shuffle(fields)
    assert cache_key(DIGEST, dict(fields), API) == cache_key(DIGEST, chosen.form_fields(), API)


@given(options, options)
def test_other_options_make_another_key(first: RemoveOptions, second: RemoveOptions) -> None:
    """Two option sets share a key exactly when they send the same fields."""
    same = first.form_fields() == second.form_fields()
    keys = (cache_key(DIGEST, o.form_fields(), API) for o in (first, second))
    assert (len(set(keys)) == 1) is same


@given(st.binary(), st.binary())
def test_other_bytes_make_another_key(one: bytes, other: bytes) -> None:
    """The key follows the input's digest."""
    keys = {cache_key(hashlib.sha256(data).hexdigest(), {}, API) for data in (one, other)}
    assert (len(keys) == 1) is (one == other)


@pytest.mark.parametrize(
    ("url", "same"),
    [
        pytest.param("HTTPS://API.REMBG.COM/rmbg", True, id="case-of-host"),
        pytest.param("https://api.rembg.com:443/rmbg/", True, id="default-port-and-slash"),
        pytest.param("https://user@api.rembg.com/rmbg?x=1", True, id="user-and-query"),
        pytest.param("http://127.0.0.1:8000/rmbg", False, id="the-local-server"),
        pytest.param("https://api.rembg.com/v2/rmbg", False, id="another-path"),
    ],
)
def test_the_api_url_is_normalised(url: str, same: bool) -> None:
    """The local server and the hosted API never share a key; spellings of one URL do."""
    assert (cache_key(DIGEST, {}, url) == cache_key(DIGEST, {}, API)) is same


def test_a_key_is_64_hex_digits() -> None:
    """Keys are safe as file and object names."""
    key = cache_key(DIGEST, {"format": "png"}, API)
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")


KEY = cache_key(DIGEST, {}, API)
ENTRY = frame(KEY, PNG, "image/png", 1000.0)


def test_keys_and_entries_keep_their_layout_across_releases() -> None:
    """A key and an entry's header are what an earlier release wrote: a change would turn every
    user's cache cold (paid again) without a word, so it must be a deliberate one."""
    fields = {"format": "png", "w": "800"}
    assert cache_key("0" * 64, fields, "https://api.rembg.com") == (
        "5825d15f2a8b23f685eb6b87319fbb5f8b9046ea8c40f816c23df11c4d44ce14"
    )
    assert frame("k", b"\x89PNG", "image/png", 1.5).startswith(
        b'RBGCACHE\x01\x00\x00\x00\x82{"key":"k","type":"image/png","length":4,'
    )


def test_a_sound_entry_unframes() -> None:
    """What was framed comes back: body, type, time stored."""
    entry = unframe(KEY, ENTRY)
    assert entry is not None
    assert (entry.body, entry.content_type, entry.stored) == (PNG, "image/png", 1000.0)
    assert stored_at(ENTRY) == 1000.0


def test_an_entry_expires_only_past_max_age() -> None:
    """No max_age: never expired; at exactly max_age seconds old an entry is still served."""
    assert expired(ENTRY, None, now=1e12) is False
    assert expired(ENTRY, 60, now=1060.0) is False
    assert expired(ENTRY, 60, now=1060.5) is True


@pytest.mark.parametrize("header", [b"[]", b'"stored"', b'{"stored": "1000"}', b"{}"])
def test_a_header_that_is_no_object_with_a_time_is_damage(header: bytes) -> None:
    """A header that is JSON but not an object with a numeric "stored" is damage: no entry,
    no time, expired (fetched again), never an exception."""
    data = MAGIC + bytes([VERSION]) + len(header).to_bytes(4, "big") + header + PNG
    assert (unframe(KEY, data), stored_at(data), expired(data, 60, now=0.0)) == (None, None, True)


@given(st.integers(0, len(ENTRY) - 1))
def test_any_truncation_is_refused(length: int) -> None:
    """An entry cut anywhere is no entry."""
    assert unframe(KEY, ENTRY[:length]) is None


@given(st.integers(0, len(ENTRY) - 1), st.integers(0, 7))
def test_any_flipped_bit_is_refused(position: int, bit: int) -> None:
    """A single bit flipped anywhere (header or body) is refused, or still says the same."""
    damaged = bytearray(ENTRY)
    damaged[position] ^= 1 << bit
    entry = unframe(KEY, bytes(damaged))
    assert entry is None or (entry.body, entry.content_type) == (PNG, "image/png")


@pytest.mark.parametrize(
    ("key", "data"),
    [
        pytest.param("0" * 64, ENTRY, id="filed-under-another-key"),
        pytest.param(KEY, frame(KEY, PNG, "image/webp", 1.0), id="type-not-the-bytes"),
        pytest.param(KEY, frame(KEY, b"no image at all", "image/png", 1.0), id="no-image"),
        pytest.param(KEY, ENTRY + b"x", id="longer-than-declared"),
        pytest.param(KEY, b"RBGCACHE\x02" + ENTRY[9:], id="another-version"),
    ],
)
def test_entries_that_are_not_what_they_say(key: str, data: bytes) -> None:
    """An entry of another key, another type than its bytes, no image, an extra byte, a
    version we do not know: all refused."""
    assert unframe(key, data) is None


def key_of(n: int) -> str:
    """A key of its own for ``n``."""
    return hashlib.sha256(str(n).encode()).hexdigest()


async def test_folder_cache_evicts_the_least_recently_used(tmp_path: Path) -> None:
    """Past max_bytes, the entries least recently used go first; one just read stays."""
    value = os.urandom(1000)
    cache = FolderCache(tmp_path, max_bytes=3000)
    for n in range(3):
        await cache.put(key_of(n), value)
    assert await cache.get(key_of(0)) == value  # 0 is now the most recently used
    await cache.put(key_of(3), value)  # 4000 bytes: down to 2700 at most
    held = [await cache.get(key_of(n)) is not None for n in range(4)]
    assert held == [True, False, False, True]
    assert sum(path.stat().st_size for path in tmp_path.rglob("*") if path.is_file()) == 2000


async def test_folder_cache_counts_what_was_there(tmp_path: Path) -> None:
    """A new FolderCache on a full folder learns its size at the first write and evicts."""
    value = os.urandom(1000)
    filler = FolderCache(tmp_path)
    for n in range(5):
        await filler.put(key_of(n), value)
    await FolderCache(tmp_path, max_bytes=2500).put(key_of(9), value)
    held = [await filler.get(key_of(n)) is not None for n in (*range(5), 9)]
    assert held == [False, False, False, False, True, True]


@pytest.mark.parametrize(
    "max_age",
    [pytest.param(60, id="seconds"), pytest.param(datetime.timedelta(minutes=1), id="timedelta")],
)
async def test_folder_cache_max_age(tmp_path: Path, max_age: Any) -> None:
    """An entry older than max_age is a miss, and is deleted."""
    cache = FolderCache(tmp_path, max_age=max_age)
    now = time.time()
    await cache.put(KEY, frame(KEY, PNG, "image/png", now))
    cache._clock = lambda: now + 59
    assert await cache.get(KEY) is not None
    cache._clock = lambda: now + 61
    assert await cache.get(KEY) is None
    assert not any(path.is_file() for path in tmp_path.rglob("*"))


async def test_fsspec_cache_max_age() -> None:
    """An fsspec entry older than max_age is a miss."""
    pytest.importorskip("fsspec")
    cache = FsspecCache(f"memory://age-{secrets.token_hex(4)}/", max_age=60)
    now = time.time()
    await cache.put(KEY, frame(KEY, PNG, "image/png", now))
    cache._clock = lambda: now + 59
    assert await cache.get(KEY) is not None
    cache._clock = lambda: now + 61
    assert await cache.get(KEY) is None
    assert await cache.get("0" * 64) is None
    await cache.aclose()


def test_fsspec_cache_pickles_for_dask_workers() -> None:
    """An FsspecCache travels to a worker without its filesystem, and works there."""
    pytest.importorskip("fsspec")
    url = f"memory://pickled-{secrets.token_hex(4)}"
    cache = FsspecCache(url, max_age=5)

    async def roundtrip() -> bytes | None:
        await cache.put(KEY, ENTRY)
        copy = pickle.loads(pickle.dumps(cache))
        assert (copy.url, copy.max_age) == (url, 5.0)
        copy.max_age = None
        return await copy.get(KEY)

    assert asyncio.run(roundtrip()) == ENTRY


def test_two_writers_of_one_key_both_leave_a_valid_entry(tmp_path: Path) -> None:
    """Writers racing on one key (threads here; processes alike: os.replace) never leave a
    torn entry, and leave no temporary file."""
    entries = [frame(KEY, PNG + bytes([n]) * 5000, "image/png", n) for n in range(8)]
    cache = FolderCache(tmp_path)
    start = threading.Barrier(len(entries))
    seen: list[bytes | None] = []

    def write(entry: bytes) -> None:
        start.wait()
        for _ in range(20):
            asyncio.run(cache.put(KEY, entry))
            seen.append(asyncio.run(cache.get(KEY)))

    threads = [threading.Thread(target=write, args=(entry,)) for entry in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(data in entries for data in seen)
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == [KEY]


def test_folder_cache_refuses_a_key_that_is_no_key(tmp_path: Path) -> None:
    """A key is never a path: '../x' cannot reach outside the folder."""
    with pytest.raises(ValueError, match="not a cache key"):
        asyncio.run(FolderCache(tmp_path).get("../../etc/passwd"))


def test_a_folder_cache_keeps_its_layout_across_releases(tmp_path: Path) -> None:
    """An entry lives at FOLDER/<first two digits>/<key>: another process, or an earlier release,
    finds what this one stored (a change would make every folder cache cold)."""
    cache = FolderCache(tmp_path)
    asyncio.run(cache.put(KEY, b"entry"))
    assert (tmp_path / KEY[:2] / KEY).read_bytes() == b"entry"


def test_a_write_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A write cut short (here: a value that is no bytes) leaves neither an entry nor its
    temporary file behind."""
    cache = FolderCache(tmp_path)
    with pytest.raises(TypeError):
        asyncio.run(cache.put(KEY, "not bytes"))  # type: ignore[arg-type]
    assert [path.name for path in tmp_path.rglob("*") if path.is_file()] == []


def test_what_cache_accepts(tmp_path: Path) -> None:
    """A URL is an FsspecCache, a path or file:// a FolderCache, a ResultCache itself."""
    pytest.importorskip("fsspec")
    assert isinstance(as_cache("memory://c", {"x": 1}), FsspecCache)
    assert as_cache("memory://c", {"x": 1}).storage_options == {"x": 1}  # type: ignore[union-attr]
    for folder in (tmp_path, str(tmp_path), f"file://{tmp_path}"):
        made = as_cache(folder)
        assert isinstance(made, FolderCache)
        assert made.path == tmp_path
    mine = FolderCache(tmp_path)
    assert as_cache(mine) is mine
    assert isinstance(mine, ResultCache)
    assert as_cache(None) is None
    with pytest.raises(TypeError, match="ResultCache"):
        as_cache(42)


class Broken:
    """A cache whose backend is down."""

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("down")

    async def put(self, key: str, value: bytes) -> None:
        raise ConnectionError("down")


async def test_a_failing_cache_is_a_miss_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A backend that fails costs a request, never the call: a miss, an answer not stored."""
    seam = CacheSeam(Broken(), API)
    assert await seam.lookup(KEY) is None
    assert await seam.put(KEY, PNG, "image/png") is False
    assert [record.levelname for record in caplog.records] == ["WARNING", "WARNING"]


class Kept:
    """A cache that keeps what it is given."""

    def __init__(self) -> None:
        self.entries: dict[str, bytes] = {}

    async def get(self, key: str) -> bytes | None:
        return self.entries.get(key)

    async def put(self, key: str, value: bytes) -> None:
        self.entries[key] = value


async def test_a_damaged_entry_is_a_miss_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A damaged entry is a miss that says so (a disk or a bucket losing bytes is worth
    knowing); a sound one is served without a word."""
    cache = Kept()
    seam = CacheSeam(cache, API)
    cache.entries[KEY] = frame(KEY, PNG, "image/png", 1.0)[:-1]
    assert await seam.lookup(KEY) is None
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    caplog.clear()
    cache.entries[KEY] = frame(KEY, PNG, "image/png", 1.0)
    assert (await seam.lookup(KEY)) is not None
    assert caplog.records == []


@pytest.mark.parametrize(
    ("body", "declared_type", "declared_length", "stored"),
    [
        pytest.param(PNG, "image/png", len(PNG), True, id="as-declared"),
        pytest.param(PNG, "image/png", None, True, id="no-length-declared"),
        pytest.param(PNG, "image/png", len(PNG) + 1, False, id="shorter-than-declared"),
        pytest.param(PNG, "image/webp", len(PNG), False, id="another-type"),
        pytest.param(b"<html>", "image/png", 6, False, id="no-image"),
    ],
)
async def test_only_an_answer_as_declared_is_stored(
    body: bytes, declared_type: str, declared_length: int | None, stored: bool
) -> None:
    """A 200 is stored only when its bytes are an image of its Content-Type and length."""
    cache = Kept()
    turn = Turn(seam=CacheSeam(cache, API), key=KEY, entry=None)
    assert await turn.store(body, declared_type, declared_length) is stored
    assert (KEY in cache.entries) is stored


async def test_an_answer_that_cannot_be_read_back_is_not_stored() -> None:
    """A result's file gone before it was read back: not stored, and no error for the call."""
    cache = Kept()
    turn = Turn(seam=CacheSeam(cache, API), key=KEY, entry=None)

    async def gone() -> bytes:
        raise FileNotFoundError("moved meanwhile")

    assert await turn.store_read(gone, "image/png", None) is False
    assert cache.entries == {}


async def test_an_answer_read_back_is_stored() -> None:
    """A result's body read back is stored as a body given."""
    cache = Kept()
    turn = Turn(seam=CacheSeam(cache, API), key=KEY, entry=None)

    async def read() -> bytes:
        return PNG

    assert await turn.store_read(read, "image/png", len(PNG)) is True
    assert unframe(KEY, cache.entries[KEY]) is not None


async def test_a_scan_deletes_temporary_files_left_by_dead_writers(tmp_path: Path) -> None:
    """A temporary file older than an hour (its writer died) goes at the next scan; a fresh
    one (a writer at work) stays, and neither counts as an entry."""
    shard = tmp_path / "ab"
    shard.mkdir()
    stale, fresh = shard / ".tmp-stale", shard / ".tmp-fresh"
    for path in (stale, fresh):
        path.write_bytes(b"x" * 5000)
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    await FolderCache(tmp_path, max_bytes=2000).put(key_of(1), b"y" * 1000)
    assert (stale.exists(), fresh.exists()) == (False, True)
    assert await FolderCache(tmp_path).get(key_of(1)) == b"y" * 1000


def plant_stale(folder: Path) -> Path:
    """A temporary file two hours old in ``folder``: the next scan deletes it (its witness)."""
    folder.mkdir(parents=True, exist_ok=True)
    stale = folder / ".tmp-witness"
    stale.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    os.utime(stale, (hours_ago, hours_ago))
    return stale


async def test_a_folder_cache_is_scanned_once_then_counted(tmp_path: Path) -> None:
    """The first write scans the folder; later writes count their bytes and scan again only
    once the count passes max_bytes (not at it), after an eviction as after none."""
    value = os.urandom(1000)
    cache = FolderCache(tmp_path, max_bytes=3000)
    await cache.put(key_of(0), value)  # the scan: 1000 bytes
    stale = plant_stale(tmp_path / "ff")
    for n in (1, 2):
        await cache.put(key_of(n), value)  # 2000, then exactly 3000: counted, not scanned
    assert stale.exists()
    await cache.put(key_of(3), value)  # 4000: a scan, evicting down to 2000
    assert not stale.exists()
    stale = plant_stale(tmp_path / "ff")
    await cache.put(key_of(4), value)  # counted: 3000
    assert stale.exists()


async def test_a_scan_evicts_past_max_bytes_and_down_to_ninety_percent(tmp_path: Path) -> None:
    """A folder of exactly max_bytes keeps every entry; past it, eviction stops as soon as
    the entries are at 90% of it, not an entry later."""
    value = os.urandom(900)
    filler = FolderCache(tmp_path)
    for n in range(3):
        await filler.put(key_of(n), value)
    await FolderCache(tmp_path, max_bytes=3600).put(key_of(3), value)  # 3600: all kept
    assert [await filler.get(key_of(n)) is not None for n in range(4)] == [True] * 4
    await FolderCache(tmp_path, max_bytes=3000).put(key_of(4), value)  # 4500 -> 2700
    held = [await filler.get(key_of(n)) is not None for n in range(5)]
    assert held == [False, False, True, True, True]


async def test_links_in_a_cache_folder_are_never_followed(tmp_path: Path) -> None:
    """A linked shard and a linked entry are neither counted by their target's size nor
    emptied: eviction only ever deletes the cache's own files."""
    outside = tmp_path / "outside"
    outside.mkdir()
    big = outside / key_of(1)
    big.write_bytes(b"x" * 5000)
    hours_ago = time.time() - 2 * 3600
    os.utime(big, (hours_ago, hours_ago))
    root = tmp_path / "cache"
    (root / "cd").mkdir(parents=True)
    (root / key_of(1)[:2]).symlink_to(outside, target_is_directory=True)
    link = root / "cd" / key_of(2)
    link.symlink_to(big)
    os.utime(link, (hours_ago, hours_ago), follow_symlinks=False)
    await FolderCache(root, max_bytes=3000).put(key_of(3), b"y" * 1000)
    assert big.read_bytes() == b"x" * 5000
    assert link.is_symlink()


@pytest.mark.parametrize(("minutes", "kept"), [(59, True), (61, False)])
async def test_a_temporary_file_is_stale_after_an_hour(
    tmp_path: Path, minutes: int, kept: bool
) -> None:
    """A temporary file untouched for over an hour is a dead writer's, deleted by a scan;
    one younger than that may be a writer at work, and stays."""
    temporary = tmp_path / "ab" / ".tmp-writer"
    temporary.parent.mkdir()
    temporary.write_bytes(b"x")
    then = time.time() - minutes * 60
    os.utime(temporary, (then, then))
    await FolderCache(tmp_path, max_bytes=2000).put(key_of(1), b"y" * 1000)
    assert temporary.exists() is kept


def test_zero_limits_are_allowed_negative_ones_refused(tmp_path: Path) -> None:
    """max_bytes=0 (keep nothing) and max_age=0 (everything stale) are limits like any; a
    negative one is refused, whatever the cache."""
    pytest.importorskip("fsspec")
    assert FolderCache(tmp_path, max_bytes=0, max_age=0).max_bytes == 0
    assert FolderCache(tmp_path, max_age=0.5).max_age == 0.5
    assert FsspecCache("memory://zero", max_age=datetime.timedelta(0)).max_age == 0.0
    with pytest.raises(ValueError, match="max_bytes"):
        FolderCache(tmp_path, max_bytes=-1)
    with pytest.raises(ValueError, match="max_age"):
        FsspecCache("memory://zero", max_age=-0.5)


def test_caches_say_where_they_are(tmp_path: Path) -> None:
    """A cache's repr names its folder (and size limit) or its URL, for logs and errors."""
    pytest.importorskip("fsspec")
    assert (
        repr(FolderCache(tmp_path, max_bytes=5)) == f"FolderCache({str(tmp_path)!r}, max_bytes=5)"
    )
    assert repr(FsspecCache("memory://place/")) == "FsspecCache('memory://place')"


def test_a_write_that_fails_raises_its_own_error(tmp_path: Path) -> None:
    """A cache folder that is a dangling link fails the write with the folder's error, not
    one about the temporary file it could not make."""
    (tmp_path / "cache").symlink_to(tmp_path / "nowhere")
    with pytest.raises(FileExistsError):
        asyncio.run(FolderCache(tmp_path / "cache").put(KEY, b"entry"))


def test_a_scan_of_a_folder_deleted_meanwhile_finds_nothing(tmp_path: Path) -> None:
    """Another process may delete the cache folder: a scan then finds no entry, no error."""
    assert evict(tmp_path / "gone", 1000, 900) == 0
