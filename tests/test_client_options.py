"""RemoveOptions refuses exactly what the server refuses, with the server's words."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from conftest import make_image
from hypothesis import given, settings
from hypothesis import strategies as st

from rembg_async import InvalidInputError, RemoveOptions
from rembg_async._contract import MSG_MULTIPLE_ERRORS
from rembg_async._options import options_from_mapping
from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer
from rembg_async.server._rmbg import parse_options
from rembg_async.server._state import APIError


def as_form(values: dict[str, Any]) -> dict[str, str]:
    """The form a plain HTTP client would send for these option values."""
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in values.items()
    }


OPTION_VALUES = {
    "format": st.sampled_from(["png", "PNG", "jpg", "jpeg", "webp", "bmp", "gif", "tiff"]),
    "w": st.integers(-20, 12_000) | st.sampled_from([1, 10_000, 10_001]),
    "h": st.integers(-20, 12_000),
    "exact_resize": st.booleans(),
    "mask": st.booleans(),
    "bg_color": st.sampled_from(["#fff", "#ffff", "#12345", "#11223344", "red", "Blue", "nope"]),
    "angle": st.floats(-400, 400, allow_nan=False) | st.sampled_from([360, -360, 360.5]),
    "expand": st.booleans(),
}


@settings(max_examples=400, deadline=None)
@given(values=st.fixed_dictionaries({}, optional=OPTION_VALUES))
def test_client_and_server_validation_agree(values: dict[str, Any]) -> None:
    """RemoveOptions and the server's form parser accept or refuse alike, word for word."""
    error, problems = refusal(values), server_problems(values)
    if problems is None:
        assert error is None
        return
    assert error is not None
    assert list(error.details) == problems
    assert str(error) == (problems[0][1] if len(problems) == 1 else MSG_MULTIPLE_ERRORS)


def server_problems(values: dict[str, Any]) -> list[tuple[str, str]] | None:
    """What the server's form parser refuses in these values as a form, or None."""
    try:
        parse_options(as_form(values))
    except APIError as refused:
        return [(problem.field, problem.message) for problem in refused.problems]
    return None


@pytest.mark.parametrize(
    "values",
    [
        {"w": -5, "angle": 500.0, "format": "gif"},
        {"h": 10_001},
        {"mask": True, "bg_color": "#fff"},
        {"bg_color": "#12345", "angle": -361},
        {"w": 300, "format": "png", "bg_color": "Blue", "angle": 90},
    ],
    ids=["three-problems", "too-tall", "mask-and-colour", "colour-and-angle", "valid"],
)
def test_client_and_live_server_agree(
    unlimited_server: LocalServer, values: dict[str, Any]
) -> None:
    """Over HTTP too: the server's answer carries the same words as the client's refusal."""
    response = requests.post(
        f"{unlimited_server.url}/rmbg",
        headers={"x-api-key": TEST_API_KEY},
        files={"image": ("a.png", make_image((8, 6)))},
        data=as_form(values),
        timeout=30,
    )
    error = refusal(values)
    if error is None:
        assert response.status_code == 200, response.text
        return
    body = response.json()
    assert str(error) == body["error"]
    server_details = [(d["field"], d["message"]) for d in body.get("details", [])]
    if server_details:
        assert list(error.details) == server_details
    else:  # a single error: the body has no details, the message is the one problem's
        assert [message for _, message in error.details] == [body["error"]]


def refusal(values: dict[str, Any]) -> InvalidInputError | None:
    """The error RemoveOptions raises for ``values``, or None if it accepts them."""
    try:
        RemoveOptions(**values)
    except InvalidInputError as error:
        return error
    return None


def test_defaults_send_no_fields() -> None:
    """Unset options are omitted from the form, never sent as w=0."""
    assert RemoveOptions().form_fields() == {}


def test_fields_are_canonical() -> None:
    """Set options are sent in the API's spelling."""
    options = RemoveOptions(format="JPG", w=800, exact_resize=True, expand=False, angle=90)
    assert options.form_fields() == {
        "format": "jpeg",
        "w": "800",
        "exact_resize": "true",
        "expand": "false",
        "angle": "90.0",
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"w": "800"}, "'w' must be an integer, got: '800'"),
        ({"w": True}, "'w' must be an integer, got: 'True'"),
        ({"mask": "yes"}, "'mask' must be a boolean (true or false), got: 'yes'"),
        ({"angle": "90"}, "'angle' must be a number, got: '90'"),
    ],
    ids=["w-str", "w-bool", "mask-str", "angle-str"],
)
def test_wrong_python_types_are_refused(values: dict[str, Any], message: str) -> None:
    """Values of the wrong type are refused in the server's style, not coerced."""
    with pytest.raises(InvalidInputError) as caught:
        RemoveOptions(**values)
    assert str(caught.value) == message


def test_options_are_frozen_and_keyword_only() -> None:
    """Options cannot change after construction, nor be given by position."""
    options = RemoveOptions(w=10)
    with pytest.raises(AttributeError):
        options.w = 20  # type: ignore[misc]
    with pytest.raises(TypeError):
        RemoveOptions("png")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mapping", "expected", "base64"),
    [
        ({"returnMask": True, "w": 0, "h": 0}, RemoveOptions(mask=True), False),
        ({"format": "png", "returnBase64": True}, RemoveOptions(format="png"), True),
        (
            {"bg_color": "red", "angle": 10, "expand": False},
            RemoveOptions(bg_color="red", angle=10, expand=False),
            False,
        ),
        (
            {"mask": True, "exact_resize": True, "w": 5, "h": 5},
            RemoveOptions(mask=True, exact_resize=True, w=5, h=5),
            False,
        ),
    ],
    ids=["rembg-js-mask", "return-base64", "colour-angle", "python-names"],
)
def test_rembg_js_option_names(
    mapping: dict[str, Any], expected: RemoveOptions, base64: bool
) -> None:
    """A dict with rembg.js's names (w=0 unset, returnMask, returnBase64) becomes options."""
    assert options_from_mapping(mapping) == (expected, base64)


def test_unknown_option_name_is_an_error() -> None:
    """A misspelt option is refused, not silently ignored."""
    with pytest.raises(InvalidInputError, match="Unknown option 'colour'"):
        options_from_mapping({"colour": "red"})
