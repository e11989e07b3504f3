"""The local server's promises, re-run with the U²-Net engine: never a 500, errors, faults.

The rest of the suite runs on the fast classic engine (``conftest.py`` sets
``REMBG_ASYNC_ENGINE``); here the same tests run again with the model doing the work.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import test_server_errors
import test_server_faults
import test_server_fuzz
import test_server_uploads
from conftest import Client, rmbg_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_server_faults import fault

from rembg_async.server import LocalServer, ServerConfig
from rembg_async.server._matting import U2Net, model_installed

pytestmark = pytest.mark.skipif(not model_installed(), reason="needs the model extra (onnxruntime)")

_SKIP = {
    # Its 64×48 synthetic image gives the model's cut-out a body under one 1000-byte chunk, so
    # it cannot show pieces: test_trickled_photo_arrives_whole below is the check on a photo.
    "test_trickled_body_arrives_whole",
    # 120 examples at one inference each: re-run below with fewer (the test is the same).
    "test_any_field_values_give_an_image_or_a_documented_error",
    # Random faults are chosen before the handler runs, whatever the engine; the kinds of
    # fault are each re-run here. It would cost 40 sequential inferences.
    "test_random_faults_fail_a_share",
}
_FUZZ = test_server_fuzz.test_any_field_values_give_an_image_or_a_documented_error


def _is_fixture(value: object) -> bool:
    return hasattr(value, "_fixture_function_marker") or hasattr(value, "_pytestfixturefunction")


for _module in (test_server_errors, test_server_faults, test_server_fuzz, test_server_uploads):
    for _name, _value in vars(_module).items():
        if (_name.startswith("test_") and _name not in _SKIP) or _is_fixture(_value):
            globals()[_name] = _value


@pytest.fixture(scope="module", autouse=True)
def _model_engine() -> Iterator[None]:
    """Every server of this module (module-scoped ones too) runs the model."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REMBG_ASYNC_ENGINE", "u2netp")
        yield


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    image=st.sampled_from(test_server_fuzz.IMAGES),
    fields=st.fixed_dictionaries({}, optional=test_server_fuzz.FIELD_VALUES),
)
def test_any_field_values_with_the_model(
    unlimited_server: LocalServer, image: bytes, fields: dict[str, str]
) -> None:
    """No 500 ever with the model; a 200 is an image of its type; a 400 has the error shape."""
    _FUZZ.hypothesis.inner_test(unlimited_server, image, fields)


def test_servers_here_run_the_model(rembg_server: Any) -> None:
    """The re-run is real: the servers of this module cut out with U²-Net."""
    assert isinstance(rembg_server.state.matting, U2Net)


async def test_trickled_photo_arrives_whole(
    rembg_server_factory: Any, session: aiohttp.ClientSession
) -> None:
    """A trickled model cut-out comes in many small pieces and is complete in the end."""
    from test_server_model import photo

    client = Client(rembg_server_factory(ServerConfig(faults=True)), session)
    image = photo("coffee.jpg")
    clean = await client.rmbg(image, fields={"format": "png"})
    pieces = []
    async with session.post(
        f"{client.server.url}/rmbg",
        data=rmbg_form(image, fields={"format": "png"}),
        headers={"x-api-key": client.server.api_key or "", **fault("trickle=0.001,chunk=20000")},
    ) as response:
        async for piece in response.content.iter_any():
            pieces.append(piece)
    assert b"".join(pieces) == clean.body
    assert len(pieces) > 1
