"""Every option's effect on the output image: sizes, modes, formats, colours, rotation."""

from __future__ import annotations

import math

import pytest
from conftest import Client, make_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rembg_async.server._imaging import RenderOptions, target_size

MAGIC = {
    "image/png": b"\x89PNG",
    "image/jpeg": b"\xff\xd8\xff",
    "image/webp": b"RIFF",
    "image/bmp": b"BM",
}


@pytest.mark.parametrize(
    ("requested", "content_type"),
    [
        pytest.param(None, "image/webp", id="default-webp"),
        pytest.param("png", "image/png", id="png"),
        pytest.param("PNG", "image/png", id="upper-case"),
        pytest.param("jpeg", "image/jpeg", id="jpeg"),
        pytest.param("jpg", "image/jpeg", id="jpg-is-jpeg"),
        pytest.param("webp", "image/webp", id="webp"),
        pytest.param("bmp", "image/bmp", id="bmp"),
    ],
)
async def test_output_format_and_content_type(
    client: Client, requested: str | None, content_type: str
) -> None:
    """The body is really in the asked format, labelled with its type and exact length."""
    answer = await client.rmbg(fields={"format": requested} if requested else {})
    assert answer.status == 200
    assert answer.headers["Content-Type"] == content_type
    assert answer.body.startswith(MAGIC[content_type])
    assert int(answer.headers["Content-Length"]) == len(answer.body)


@pytest.mark.parametrize("input_format", ["PNG", "JPEG", "WEBP", "BMP"])
async def test_every_input_format_is_read(client: Client, input_format: str) -> None:
    """webp, bmp, png and jpeg inputs all decode and come back at their size."""
    answer = await client.rmbg(make_image((40, 30), input_format), filename="upload")
    assert answer.status == 200
    assert answer.image().size == (40, 30)


async def test_background_becomes_transparent_and_subject_stays(client: Client) -> None:
    """The plain border is cut out; the centre of the subject keeps its colour, opaque."""
    answer = await client.rmbg(make_image((80, 60)), fields={"format": "png"})
    image = answer.image().convert("RGBA")
    assert image.getpixel((0, 0))[3] == 0
    red, green, blue, alpha = image.getpixel((40, 30))
    assert alpha == 255
    assert (red, green, blue) == pytest.approx((200, 20, 20), abs=3)


@pytest.mark.parametrize(
    ("fields", "size"),
    [
        pytest.param({"w": "320"}, (320, 240), id="width-keeps-aspect"),
        pytest.param({"h": "120"}, (160, 120), id="height-keeps-aspect"),
        pytest.param({"w": "300", "h": "300"}, (300, 225), id="fit-inside-box"),
        pytest.param({"w": "800", "h": "600"}, (800, 600), id="upscale"),
        pytest.param({"w": "100", "h": "100", "exact_resize": "true"}, (100, 100), id="exact"),
        pytest.param({"w": "0", "h": "0"}, (640, 480), id="zero-is-unset"),
        pytest.param({"w": "", "bg_color": "", "format": ""}, (640, 480), id="empty-is-unset"),
        pytest.param({"w": "50", "exact_resize": "1"}, (50, 38), id="exact-needs-both"),
    ],
)
async def test_resizing(client: Client, fields: dict[str, str], size: tuple[int, int]) -> None:
    """w/h keep the aspect ratio, fit inside both, or force the size with exact_resize."""
    answer = await client.rmbg(make_image((640, 480), "JPEG"), fields={**fields, "format": "png"})
    assert answer.status == 200
    assert answer.image().size == size


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    width=st.integers(1, 10_000),
    height=st.integers(1, 10_000),
    w=st.none() | st.integers(1, 10_000),
    h=st.none() | st.integers(1, 10_000),
    exact=st.booleans(),
)
def test_target_size_properties(
    width: int, height: int, w: int | None, h: int | None, exact: bool
) -> None:
    """The size always fits the request, keeps the aspect ratio to a pixel, and is never empty."""
    out_w, out_h = target_size(width, height, RenderOptions(w=w, h=h, exact_resize=exact))
    assert out_w >= 1
    assert out_h >= 1
    if w is None and h is None:
        assert (out_w, out_h) == (width, height)
    elif exact and w is not None and h is not None:
        assert (out_w, out_h) == (w, h)
    else:
        assert out_w <= (w or math.inf)
        assert out_h <= (h or math.inf)
        assert out_w == w or out_h == h  # one side meets its target
        # Rounding moves each side by at most half a pixel from the true aspect ratio.
        assert abs(out_w * height - out_h * width) <= (width + height) / 2 + max(width, height)


async def test_mask_is_a_grey_alpha_image(client: Client) -> None:
    """mask=true returns the alpha matte alone: one grey channel, white subject, black ground."""
    answer = await client.rmbg(make_image((80, 60)), fields={"mask": "true", "format": "png"})
    image = answer.image()
    assert image.mode == "L"
    assert image.getpixel((0, 0)) == 0
    assert image.getpixel((40, 30)) == 255


@pytest.mark.parametrize(
    ("bg_color", "rgba"),
    [
        pytest.param("#00f", (0, 0, 255, 255), id="rgb"),
        pytest.param("#0f08", (0, 255, 0, 136), id="rgba"),
        pytest.param("#123456", (0x12, 0x34, 0x56, 255), id="rrggbb"),
        pytest.param("#ffffff80", (255, 255, 255, 128), id="rrggbbaa"),
        pytest.param("blue", (0, 0, 255, 255), id="css-name"),
        pytest.param("RebeccaPurple", (102, 51, 153, 255), id="css-name-any-case"),
    ],
)
async def test_background_colour(client: Client, bg_color: str, rgba: tuple[int, ...]) -> None:
    """bg_color fills what was background, in every accepted notation."""
    answer = await client.rmbg(make_image((80, 60)), fields={"bg_color": bg_color, "format": "png"})
    assert answer.image().convert("RGBA").getpixel((0, 0)) == pytest.approx(rgba, abs=1)


@pytest.mark.parametrize("format", ["jpeg", "bmp"])
@pytest.mark.parametrize(
    ("bg_color", "rgb"), [(None, (255, 255, 255)), ("#00ff00", (0, 255, 0))], ids=["white", "green"]
)
async def test_formats_without_alpha_are_flattened(
    client: Client, format: str, bg_color: str | None, rgb: tuple[int, int, int]
) -> None:
    """jpeg and bmp carry no alpha: the cut-out lies on bg_color, or on white."""
    fields = {"format": format, **({"bg_color": bg_color} if bg_color else {})}
    image = (
        await client.rmbg(make_image((80, 60), background=(10, 10, 200)), fields=fields)
    ).image()
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == pytest.approx(rgb, abs=4)


@pytest.mark.parametrize(
    ("angle", "expand", "size"),
    [
        pytest.param("90", None, (60, 80), id="quarter-turn-expands"),
        pytest.param("-90", "true", (60, 80), id="negative-quarter-turn"),
        pytest.param("360", None, (80, 60), id="full-turn"),
        pytest.param("45", "false", (80, 60), id="no-expand-keeps-canvas"),
        pytest.param("0", None, (80, 60), id="zero"),
    ],
)
async def test_rotation_bounds(
    client: Client, angle: str, expand: str | None, size: tuple[int, int]
) -> None:
    """angle rotates the result; expand grows the canvas to hold it, or the canvas stays."""
    fields = {"angle": angle, "format": "png", **({"expand": expand} if expand else {})}
    assert (await client.rmbg(make_image((80, 60)), fields=fields)).image().size == size


async def test_rotation_by_45_degrees_expands_to_the_bounding_box(client: Client) -> None:
    """A 45° turn with expand holds the whole rotated rectangle."""
    image = (
        await client.rmbg(make_image((80, 60)), fields={"angle": "45", "format": "png"})
    ).image()
    diagonal = (80 + 60) / math.sqrt(2)
    assert image.size[0] == pytest.approx(diagonal, abs=2)
    assert image.size[1] == pytest.approx(diagonal, abs=2)


async def test_rotation_padding_takes_the_background_colour(client: Client) -> None:
    """The order is rotate, then colour: the corners added by expand are bg_color too."""
    fields = {"angle": "45", "bg_color": "#ff0000", "format": "png"}
    image = (await client.rmbg(make_image((80, 60)), fields=fields)).image().convert("RGBA")
    assert image.getpixel((0, 0)) == (255, 0, 0, 255)


async def test_resize_happens_before_rotation(client: Client) -> None:
    """w applies to the unrotated image: 640×480, w=320 then 90° gives 240×320."""
    fields = {"w": "320", "angle": "90", "format": "png"}
    image = (await client.rmbg(make_image((640, 480), "JPEG"), fields=fields)).image()
    assert image.size == (240, 320)


@pytest.mark.parametrize("value", ["TRUE", "1", " true "])
async def test_booleans_accept_one_and_any_case(client: Client, value: str) -> None:
    """true/false and 1/0 in any case are booleans."""
    answer = await client.rmbg(fields={"mask": value, "format": "png"})
    assert answer.image().mode == "L"


async def test_unknown_fields_are_ignored(client: Client) -> None:
    """Fields the API does not know, like rembg.js's return_base64, change nothing."""
    answer = await client.rmbg(fields={"return_base64": "true", "colour": "x"})
    assert answer.status == 200


async def test_exif_orientation_is_applied(client: Client) -> None:
    """A photo marked as rotated by its EXIF data comes back upright."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(make_image((80, 60), "JPEG")))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    answer = await client.rmbg(buffer.getvalue(), filename="p.jpg", fields={"format": "png"})
    assert answer.image().size == (60, 80)


def test_huge_webp_falls_back_to_lossless() -> None:
    """A canvas too large for lossy WEBP (libwebp's partition overflow) is still encoded.

    A 10,000 px image turned 45° with expand is such a canvas; the server must answer it, not 500.
    """
    from PIL import Image, ImageDraw

    from rembg_async.server._imaging import encode

    side = 12376
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    half = side // 2
    diamond = [(half, 0), (side - 1, half), (half, side - 1), (0, half)]
    ImageDraw.Draw(image).polygon(diamond, fill=(200, 20, 20, 255))
    rendered = encode(image, "webp")
    assert rendered.content_type == "image/webp"
    assert rendered.body[12:16] == b"VP8L"  # the lossless bitstream
