"""The U²-Net engine on real photos: the mask follows the subject, through every option."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
from conftest import Answer, Client, make_image
from PIL import Image, ImageFilter

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import Account, LocalServer, RateLimits, ServerConfig
from rembg_async.server._matting import U2Net, model_installed
from rembg_async.server._state import available_cores

pytestmark = pytest.mark.skipif(not model_installed(), reason="needs the model extra (onnxruntime)")

PHOTOS = Path(__file__).parent.parent / "examples" / "images" / "photos"
Box = tuple[float, float, float, float]  # left, top, right, bottom, as fractions of the size

# Regions of known content in each photo: (subject boxes, background boxes).
REGIONS: dict[str, tuple[list[Box], list[Box]]] = {
    "chelsea.jpg": ([(0.3, 0.1, 0.6, 0.4)], [(0.9, 0.0, 1.0, 1.0)]),
    "coffee.jpg": (
        [(0.35, 0.3, 0.6, 0.7)],
        [(0.0, 0.0, 0.1, 1.0), (0.9, 0.0, 1.0, 1.0), (0.0, 0.0, 0.2, 0.1)],
    ),
    "astronaut.jpg": (
        [(0.4, 0.1, 0.5, 0.3), (0.3, 0.6, 0.5, 0.8)],
        [(0.7, 0.0, 1.0, 0.4), (0.0, 0.0, 0.2, 0.3)],
    ),
}
COFFEE = "coffee.jpg"
#: rembg's own masks of the photos on the same u2netp.onnx, thresholded (make_masks.py there).
GOLDEN_MASKS = Path(__file__).parent / "data" / "masks"


@pytest.fixture(scope="session")
def model_server() -> Iterator[LocalServer]:
    """One server running U²-Net for the whole session: the model is loaded once."""
    config = ServerConfig(
        accounts=[Account(api_key=TEST_API_KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0, daily_anonymous=0),
        engine="u2netp",
    )
    with LocalServer(config) as server:
        yield server


@pytest.fixture
async def model(model_server: LocalServer) -> AsyncIterator[Client]:
    """A client of the U²-Net server."""
    async with aiohttp.ClientSession() as session:
        yield Client(model_server, session)


def photo(name: str) -> bytes:
    """The bytes of a shipped photo."""
    return (PHOTOS / name).read_bytes()


def original(name: str, mode: str = "RGB") -> npt.NDArray[np.uint8]:
    """A shipped photo's pixels."""
    with Image.open(PHOTOS / name) as image:
        return np.asarray(image.convert(mode))


def region(values: npt.NDArray[np.uint8], box: Box) -> npt.NDArray[np.uint8]:
    """The part of an ``(height, width, …)`` array inside ``box``."""
    height, width = values.shape[:2]
    left, top, right, bottom = box
    return values[int(top * height) : int(bottom * height), int(left * width) : int(right * width)]


def assert_follows_subject(alpha: npt.NDArray[np.uint8], name: str, turn: int = 0) -> None:
    """Opaque on the photo's subject boxes, transparent on its background boxes."""
    subject, background = REGIONS[name]
    for box in subject:
        assert region(alpha, rotated(box, turn)).mean() > 235, ("subject", box)
    for box in background:
        assert region(alpha, rotated(box, turn)).mean() < 10, ("background", box)


def rotated(box: Box, turns: int) -> Box:
    """``box`` after the image is turned 90° anticlockwise ``turns`` times (with expand)."""
    for _ in range(turns % 4):
        left, top, right, bottom = box
        box = (top, 1 - right, bottom, 1 - left)
    return box


def pixels(answer: Answer, mode: str) -> npt.NDArray[np.uint8]:
    """The answer's image in ``mode``, after checking it is a 200."""
    assert answer.status == 200, answer.body[:200]
    return np.asarray(answer.image().convert(mode))


@pytest.mark.parametrize("name", sorted(REGIONS))
async def test_mask_is_opaque_on_the_subject_and_clear_on_the_background(
    model: Client, name: str
) -> None:
    """On each real photo, the model's mask covers the subject and nothing of the background."""
    answer = await model.rmbg(photo(name), filename=name, fields={"mask": "true", "format": "png"})
    mask = pixels(answer, "L")
    assert mask.shape == original(name).shape[:2]
    assert_follows_subject(mask, name)


@pytest.mark.parametrize("format", ["png", "webp", "jpeg", "bmp"])
async def test_mask_in_every_format(model: Client, format: str) -> None:
    """The mask keeps its regions whatever format carries it."""
    answer = await model.rmbg(photo(COFFEE), fields={"mask": "true", "format": format})
    assert_follows_subject(pixels(answer, "L"), COFFEE)


@pytest.mark.parametrize("format", ["png", "webp"])
async def test_cutout_alpha_in_formats_with_alpha(model: Client, format: str) -> None:
    """A png/webp cut-out carries the model's opacity and the photo's own colours."""
    answer = await model.rmbg(photo(COFFEE), fields={"format": format})
    cutout = pixels(answer, "RGBA")
    assert_follows_subject(cutout[..., 3], COFFEE)
    before = original(COFFEE).astype(np.int16)
    subject = REGIONS[COFFEE][0][0]
    colours = region(cutout[..., :3].astype(np.int16), subject)
    assert np.abs(colours - region(before, subject)).mean() < 12


@pytest.mark.parametrize("format", ["jpeg", "bmp"])
async def test_cutout_flattened_in_formats_without_alpha(model: Client, format: str) -> None:
    """A jpeg/bmp cut-out is the subject on white: the background is gone, the subject kept."""
    answer = await model.rmbg(photo(COFFEE), fields={"format": format})
    rgb = pixels(answer, "RGB").astype(np.int16)
    before = original(COFFEE).astype(np.int16)
    subject, background = REGIONS[COFFEE]
    for box in background:
        assert region(rgb, box).min(axis=2).mean() > 245, box
        assert region(before, box).min(axis=2).mean() < 200, box  # it was not white before
    assert np.abs(region(rgb, subject[0]) - region(before, subject[0])).mean() < 15


async def test_bg_color_fills_the_background(model: Client) -> None:
    """``bg_color`` shows where the model found background, and only there."""
    answer = await model.rmbg(photo(COFFEE), fields={"format": "png", "bg_color": "#00ff00"})
    rgba = pixels(answer, "RGBA").astype(np.int16)
    subject, background = REGIONS[COFFEE]
    assert (rgba[..., 3] == 255).all()
    for box in background:
        green = region(rgba, box).mean(axis=(0, 1))
        assert green[1] > 240, box
        assert max(green[0], green[2]) < 15, box
    assert region(rgba, subject[0])[..., 1].mean() < 200  # the cup is not green


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        pytest.param({"w": "150"}, (150, 100), id="w"),
        pytest.param({"h": "200"}, (300, 200), id="h"),
        pytest.param({"w": "90", "h": "90", "exact_resize": "true"}, (90, 90), id="exact"),
    ],
)
async def test_mask_follows_resize(
    model: Client, fields: dict[str, str], size: tuple[int, int]
) -> None:
    """Resizing scales the model's mask with the image: the regions stay where they were."""
    answer = await model.rmbg(photo(COFFEE), fields={"mask": "true", "format": "png", **fields})
    assert answer.image().size == size
    assert_follows_subject(pixels(answer, "L"), COFFEE)


@pytest.mark.parametrize("turns", [1, 2, 3])
async def test_mask_follows_rotation(model: Client, turns: int) -> None:
    """Rotation (with expand) turns the model's mask with the image."""
    fields = {"mask": "true", "format": "png", "angle": str(90 * turns)}
    answer = await model.rmbg(photo("astronaut.jpg"), fields=fields)
    assert_follows_subject(pixels(answer, "L"), "astronaut.jpg", turn=turns)


async def test_opacity_the_input_had_is_kept(model: Client) -> None:
    """A transparent part of the upload stays transparent where the model sees the subject."""
    rgba = original(COFFEE, "RGBA").copy()
    hole = (0.45, 0.45, 0.5, 0.5)
    region(rgba, hole)[..., 3] = 0  # the colours stay: the model sees the same photo
    buffer = io.BytesIO()
    Image.fromarray(rgba).save(buffer, "PNG")
    answer = await model.rmbg(buffer.getvalue(), fields={"mask": "true", "format": "png"})
    mask = pixels(answer, "L")
    assert region(mask, hole).max() == 0
    assert region(mask, (0.35, 0.3, 0.6, 0.4)).mean() > 235


@pytest.mark.parametrize(
    ("size", "mode"),
    [((1, 1), "RGB"), ((3, 700), "L"), ((640, 2), "P"), ((50, 40), "LA"), ((50, 40), "CMYK")],
)
async def test_odd_sizes_and_modes_are_cut_out(
    model: Client, size: tuple[int, int], mode: str
) -> None:
    """Tiny, thin, grey, palette and CMYK images go through the model at their own size."""
    image = Image.new(mode, size)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if mode == "CMYK" else "PNG")
    answer = await model.rmbg(buffer.getvalue(), fields={"format": "png"})
    assert answer.status == 200
    assert answer.image().size == size


@pytest.mark.parametrize("name", sorted(REGIONS))
async def test_mask_is_rembgs_on_the_same_weights(model: Client, name: str) -> None:
    """The mask matches rembg's on the same u2netp.onnx: IoU at least 0.99 on each photo."""
    answer = await model.rmbg(photo(name), filename=name, fields={"mask": "true", "format": "png"})
    ours = pixels(answer, "L") >= 128
    with Image.open(GOLDEN_MASKS / name.replace(".jpg", ".png")) as golden:
        theirs = np.asarray(golden.convert("L")) >= 128
    assert (ours & theirs).sum() / (ours | theirs).sum() >= 0.99


async def test_png_cutout_keeps_nothing_under_transparent_pixels(model: Client) -> None:
    """A PNG cut-out of a photo holds 0, 0, 0, 0 wherever it is fully transparent."""
    rgba = pixels(await model.rmbg(photo(COFFEE), fields={"format": "png"}), "RGBA")
    hidden = rgba[..., 3] == 0
    assert hidden.mean() > 0.3  # much of the photo was removed
    assert not rgba[hidden].any()


#: The size of rembg's PNG cut-out of the coffee on the same weights (`rembg i -m u2netp`, 2.0.86).
REMBG_COFFEE_PNG = 207_997


async def test_png_cutout_is_at_most_a_fifth_larger_than_rembgs(model: Client) -> None:
    """The coffee's PNG cut-out is at most 1.2 times rembg's: speed was not bought with bytes."""
    answer = await model.rmbg(photo(COFFEE), fields={"format": "png"})
    assert answer.status == 200
    assert len(answer.body) <= 1.2 * REMBG_COFFEE_PNG


async def test_lossy_webp_cutout_keeps_nothing_under_transparent_pixels(model: Client) -> None:
    """Lossy WEBP: under alpha 0 only codec noise near the subject, nothing of the photo."""
    rgba = pixels(await model.rmbg(photo(COFFEE), fields={"format": "webp"}), "RGBA")
    rgba = rgba.astype(np.int16)
    hidden = rgba[..., 3] == 0
    visible = Image.fromarray(((rgba[..., 3] > 0) * 255).astype(np.uint8))
    near = np.asarray(visible.filter(ImageFilter.MaxFilter(33))) > 0  # 16 px around the subject
    far = hidden & ~near
    assert far.mean() > 0.2
    assert rgba[far][:, :3].max() <= 4  # black, give or take the codec's rounding
    before = original(COFFEE).astype(np.int16)
    likeness = np.corrcoef(rgba[hidden][:, :3].ravel(), before[hidden].ravel())[0, 1]
    assert abs(likeness) < 0.1  # nothing of the removed background, even near the subject


@pytest.mark.skipif(available_cores() < 2, reason="one core: there is nothing to lend")
def test_a_lone_request_runs_the_model_on_every_core(model_server: LocalServer) -> None:
    """A request alone in the pool runs on all the cores; with company, on a worker's share."""
    state = model_server.state

    def engines() -> tuple[object, object]:
        lone = state.matting_for_next()
        state.rendering += 1
        try:
            return lone, state.matting_for_next()
        finally:
            state.rendering -= 1

    lone, busy = model_server.call(engines)
    assert isinstance(lone, U2Net)
    assert isinstance(busy, U2Net)
    assert lone.session.get_session_options().intra_op_num_threads == available_cores()
    assert busy.session.get_session_options().intra_op_num_threads == 1


async def test_server_answers_usage_while_the_model_works(model: Client) -> None:
    """Inference runs off the event loop: usage is answered while cut-outs are still in work."""
    image = photo("astronaut.jpg")
    jobs = [asyncio.ensure_future(model.rmbg(image, filename="a.jpg")) for _ in range(6)]
    done, pending = await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    for _ in range(3):
        assert (await model.usage()).status == 200
    assert any(not job.done() for job in pending)
    assert all(answer.status == 200 for answer in await asyncio.gather(*jobs))
    assert done


def test_default_engine_is_the_model_when_installed(
    rembg_server_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the model extra (and no $REMBG_ASYNC_ENGINE), servers cut out with U²-Net."""

    monkeypatch.delenv("REMBG_ASYNC_ENGINE")
    with LocalServer() as plain:
        for server in (rembg_server_factory(), plain):
            assert isinstance(server.state.matting, U2Net)
            assert server.state.matting.name == "u2netp"


def test_classic_engine_is_still_there(rembg_server_factory: Any) -> None:
    """``engine="classic"`` runs the colour threshold, which still cuts plain product shots."""
    import requests

    from rembg_async.server._matting import classic

    server: LocalServer = rembg_server_factory(ServerConfig(engine="classic"))
    assert server.state.matting is classic
    response = requests.post(
        f"{server.url}/rmbg",
        headers={"x-api-key": TEST_API_KEY},
        files={"image": ("a.png", make_image((80, 60)))},
        data={"mask": "true", "format": "png"},
        timeout=30,
    )
    mask = np.asarray(Image.open(io.BytesIO(response.content)))
    assert mask[30, 40] == 255
    assert mask[2, 2] == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority: Linux")
def test_image_workers_yield_the_cpu_to_the_event_loop(rembg_server: LocalServer) -> None:
    """Workers run nicer than the loop, so short requests go first on a busy machine."""

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    loop = rembg_server.call(niceness)
    assert rembg_server.state.executor is not None
    worker = rembg_server.state.executor.submit(niceness).result()
    assert worker == min(19, loop + 5)
