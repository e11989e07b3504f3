"""Real images with arbitrary field values: every answer is an image or a documented error."""

from __future__ import annotations

import io

import requests
from conftest import make_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from rembg_async._contract import OUTPUT_FORMATS
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer

FIELD_VALUES = {
    "format": st.sampled_from(["png", "JPG", "webp", "bmp", "gif", ""]) | st.text(max_size=8),
    "w": st.integers(-20, 400).map(str) | st.text(max_size=6),
    "h": st.integers(-20, 400).map(str) | st.text(max_size=6),
    "exact_resize": st.sampled_from(["true", "false", "1", "0", "maybe"]),
    "mask": st.sampled_from(["true", "false", "TRUE", "0", ""]),
    "bg_color": st.sampled_from(["#fff", "#12345", "red", "nocolour", "#11223344"])
    | st.text(max_size=9),
    "angle": st.floats(-720, 720).map(str)
    | st.sampled_from(["nan", "inf", "1e400"])
    | st.text(max_size=6),
    "expand": st.sampled_from(["true", "false", "no"]),
}
IMAGES = [make_image((48, 36), kind) for kind in ("PNG", "JPEG", "WEBP", "BMP")]


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    image=st.sampled_from(IMAGES),
    fields=st.fixed_dictionaries({}, optional=FIELD_VALUES),
)
def test_any_field_values_give_an_image_or_a_documented_error(
    unlimited_server: LocalServer, image: bytes, fields: dict[str, str]
) -> None:
    """No 500 ever; a 200 is an image of the announced type; a 400 has the error shape."""
    response = requests.post(
        f"{unlimited_server.url}/rmbg",
        headers={"x-api-key": TEST_API_KEY},
        files={"image": ("in.png", image)},
        data=fields,
        timeout=30,
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.headers["Content-Type"] in OUTPUT_FORMATS.values()
        Image.open(io.BytesIO(response.content)).verify()
        return
    body = response.json()
    assert body["status"] == 400
    if "details" in body:
        assert body["error"] == "Multiple validation errors"
        assert len(body["details"]) >= 2
        assert all(set(item) == {"field", "message"} for item in body["details"])
    else:
        assert set(body) == {"error", "status"}
