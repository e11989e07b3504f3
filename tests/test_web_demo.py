"""The web demo in a real browser: headless Chromium, driven by Selenium, uploads an image, sees
the upload, processing and download happen and the cut-out appear, then uploads a second."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _web_services import SERVICES, Service, running
from PIL import Image, ImageDraw

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Set to a path to save a screenshot of the page after the first cut-out (the README's).
SCREENSHOT = os.environ.get("REMBG_ASYNC_SCREENSHOT")
#: Flags that let Chromium run as root, headless, on a machine with no network beyond loopback.
FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,1000",
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless Chromium through chromedriver (Debian's packages, which .ci/run installs)."""
    if CHROMIUM is None or CHROMEDRIVER is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs the browser test: .ci/run installs chromium and chromium-driver")
        pytest.skip(
            "no Chromium here: install Debian's chromium and chromium-driver (.ci/run does)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module", params=SERVICES, ids=["aiohttp", "fastapi"])
def service(
    request: pytest.FixtureRequest,
    unlimited_server: LocalServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Service]:
    """One example service per parameter, talking to the local server."""
    temp = tmp_path_factory.mktemp("service-tmp")
    with running(request.param, unlimited_server.url, TEST_API_KEY, temp) as started:
        yield started


def photo(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    """A product-shot-like PNG: a pale background, a coloured shape, a little noise."""
    image = Image.new("RGB", size, (246, 246, 243))
    width, height = size
    ImageDraw.Draw(image).ellipse(
        (width // 5, height // 6, 4 * width // 5, 5 * height // 6), colour
    )
    noise = Image.effect_noise(size, 6).convert("RGB")
    Image.blend(image, noise, 0.04).save(path, "PNG")
    return path


def seen(driver: Any) -> dict[str, Any]:
    """What the page recorded: the furthest each bar got, the states, the results shown."""
    result: dict[str, Any] = driver.execute_script("return window.seen")
    return result


def upload(driver: Any, image: Path, results: int) -> dict[str, Any]:
    """Choose ``image`` in the page and wait until the ``results``-th cut-out is shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(driver, 60).until(lambda d: seen(d)["results"] >= results or _failed(d))
    return seen(driver)


def _failed(driver: Any) -> bool:
    return "failed" in seen(driver)["states"]


def shown(driver: Any, element: str) -> int:
    """The natural width of an image element (0 while nothing is shown)."""
    width: int = driver.execute_script(f"return document.getElementById('{element}').naturalWidth")
    return width


def test_upload_progress_result_then_a_second_upload(
    browser: Any, service: Service, tmp_path: Path
) -> None:
    """Upload, processing and download happen in that order with their bars reaching the end,
    before and after images appear; a second image resets the page and goes the same way."""
    browser.get(service.url)
    first = upload(browser, photo(tmp_path / "mug.png", (900, 700), (180, 40, 40)), results=1)
    assert first["states"] == ["upload", "processing", "download", "done"]
    assert first["upload"] == 1
    assert first["download"] == 1
    assert shown(browser, "before") == 900
    assert shown(browser, "after") == 900
    if SCREENSHOT:
        browser.save_screenshot(SCREENSHOT)

    second = upload(browser, photo(tmp_path / "cup.png", (600, 800), (40, 90, 180)), results=2)
    assert second["states"][4:] == ["upload", "processing", "download", "done"]
    assert second["upload"] == 1
    assert shown(browser, "before") == 600
    assert shown(browser, "after") == 600


def test_a_refused_file_shows_the_api_message(
    browser: Any, service: Service, tmp_path: Path
) -> None:
    """A file that is no image: the page says the API's message, and shows no result."""
    from selenium.webdriver.common.by import By

    browser.get(service.url)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"these are notes, not an image")
    upload(browser, bad, results=1)
    assert seen(browser)["states"][-1] == "failed"
    assert "valid image" in browser.find_element(By.ID, "status").text
    assert shown(browser, "after") == 0
