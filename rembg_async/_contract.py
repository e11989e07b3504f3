"""The RemBG API's limits, field rules and error messages, shared by client and server. The
messages are the hosted API's, byte for byte (``api-spec.md``): the client refuses bad input with
the server's very words, and the local server answers as the hosted one does."""

from __future__ import annotations

import math
import re
from typing import Final

from ._colors import CSS_COLOR_NAMES

MIB: Final = 1024 * 1024
MAX_UPLOAD_BYTES: Final = 50 * MIB
MAX_DIMENSION: Final = 10_000
MAX_ANGLE: Final = 360.0

#: Extensions the API accepts in the uploaded file's name.
ALLOWED_EXTENSIONS: Final = ("webp", "bmp", "png", "jpg", "jpeg")
#: Output formats, in the order the API lists them, with their MIME types.
OUTPUT_FORMATS: Final = {name: f"image/{name}" for name in ("png", "jpeg", "webp", "bmp")}
#: Output formats that carry no alpha channel, so the cut-out is flattened.
OPAQUE_FORMATS: Final = frozenset({"jpeg", "bmp"})
DEFAULT_FORMAT: Final = "webp"
#: What a boolean field or query flag takes for true (lowercased).
TRUE_VALUES: Final = ("true", "1")

# --- authentication --------------------------------------------------------------------------
API_KEY_HEADER: Final = "x-api-key"
MSG_INVALID_API_KEY: Final = "invalid api key"
MSG_EMAIL_NOT_VERIFIED: Final = "Email address not verified \u2013 please check your inbox"
MSG_KEY_AND_TOKEN: Final = "This is a mistake: Cannot use both API key and user token"

# --- the uploaded file, in the order the server checks it --------------------------------------
MSG_NO_IMAGE: Final = "No image file provided. Please include an 'image' field in your form data."
MSG_NO_FILE_SELECTED: Final = "No file selected. Please choose an image file to upload."
MSG_EMPTY_FILE: Final = "Uploaded file is empty (0 bytes)."
MSG_INVALID_SIGNATURE: Final = "File does not appear to be a valid image (invalid file signature)"
MSG_MULTIPLE_ERRORS: Final = "Multiple validation errors"
MSG_MASK_WITH_BG_COLOR: Final = (
    "Cannot use 'mask=true' together with 'bg_color'. Choose one or the other."
)

# --- rate limits and credits -------------------------------------------------------------------
MSG_RATE_SHORT_TERM: Final = "You're making requests too quickly, Please Upgrade or slow down."
MSG_RATE_DAILY: Final = "You've reached your daily limit. Please sign up for more access."
MSG_RATE_MONTHLY: Final = "You've reached your monthly limit. Consider purchasing more credits."

# --- membership usage ----------------------------------------------------------------------------
MSG_PERIOD_WITH_CALENDAR: Final = "Cannot combine 'periodStartUnix' with 'year' or 'month'."


def out_of_range_message(name: str, low: int, high: int, value: int) -> str:
    """**[decision]** the message for a usage query number out of its range."""
    return f"'{name}' must be between {low} and {high}, got: {value}"


def file_too_large_message(size: int) -> str:
    """The message for an upload over the size limit; sizes print in MiB with one decimal."""
    return (
        f"File size ({size / MIB:.1f} MB) exceeds the maximum allowed size of "
        f"{MAX_UPLOAD_BYTES // MIB} MB."
    )


def dimension_messages(width: int, height: int) -> list[str]:
    """The messages for an image wider or taller than the API accepts (width first)."""
    sides = (("width", width), ("height", height))
    return [
        f"Image {side} ({size}px) exceeds the maximum allowed {side} of {MAX_DIMENSION}px."
        for side, size in sides
        if size > MAX_DIMENSION
    ]


def extension_problem(filename: str) -> str | None:
    """The unsupported-type message for ``filename``, or None when its type is acceptable (as
    is a name with no extension: its content signature decides)."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, extension = base.rpartition(".")
    extension = extension.lower()
    if not (dot and stem) or extension in ALLOWED_EXTENSIONS:
        return None
    allowed = ", ".join(ALLOWED_EXTENSIONS)
    return f"File type '.{extension}' is not supported. Allowed formats: {allowed}"


class FieldProblem(Exception):
    """One form field's value is refused; ``str(self)`` is the API's message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_format(raw: str) -> str:
    """The canonical output format for ``raw`` (case-insensitive; ``jpg`` means ``jpeg``)."""
    value = raw.strip().lower()
    value = "jpeg" if value == "jpg" else value
    if value not in OUTPUT_FORMATS:
        allowed = ", ".join(name.upper() for name in OUTPUT_FORMATS)
        raise FieldProblem("format", f"Invalid format '{raw}'. Allowed formats: {allowed}")
    return value


_INTEGER = re.compile(r"[+-]?\d+")


def integer_problem(field: str, value: object) -> FieldProblem:
    """The refusal of a ``field`` value that is no integer."""
    return FieldProblem(field, f"'{field}' must be an integer, got: '{value}'")


def parse_dimension(field: str, raw: str) -> int | None:
    """``w`` or ``h``: an integer 1 … 10,000, where 0 means unset (returned as None)."""
    text = raw.strip()
    if not _INTEGER.fullmatch(text):
        raise integer_problem(field, raw)
    return check_dimension(field, int(text), shown=text)


def check_dimension(field: str, value: int, *, shown: str | None = None) -> int | None:
    """Range-check an integer ``w``/``h``; ``shown`` is how the message prints the value."""
    shown = str(value) if shown is None else shown
    if value == 0:
        return None
    if value < 1:
        raise FieldProblem(field, f"'{field}' must be at least 1, got: {shown}")
    if value > MAX_DIMENSION:
        raise FieldProblem(field, f"'{field}' must be at most {MAX_DIMENSION}, got: {shown}")
    return value


def parse_angle(raw: str) -> float:
    """``angle``: a number of degrees, -360 … 360."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise FieldProblem("angle", f"'angle' must be a number, got: '{raw}'") from None
    return check_angle(value)


def check_angle(value: float) -> float:
    """Range-check an angle; the message prints it as a Python float (``500.0``)."""
    if math.isnan(value) or not -MAX_ANGLE <= value <= MAX_ANGLE:
        raise FieldProblem(
            "angle",
            f"'angle' must be between -{MAX_ANGLE:.0f} and {MAX_ANGLE:.0f} degrees, "
            f"got: {float(value)!r}",
        )
    return float(value)


def parse_boolean(field: str, raw: str) -> bool:
    """A boolean field: ``true``/``false`` or ``1``/``0``, case-insensitive."""
    value = raw.strip().lower()
    if value in TRUE_VALUES:
        return True
    if value in ("false", "0"):
        return False
    raise FieldProblem(field, f"'{field}' must be a boolean (true or false), got: '{raw}'")


_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})")


def parse_color(raw: str) -> tuple[int, int, int, int]:
    """``bg_color`` as RGBA: ``#RGB``, ``#RGBA``, ``#RRGGBB``, ``#RRGGBBAA`` or a CSS name."""
    text = raw.strip()
    digits = text[1:] if _HEX_COLOR.fullmatch(text) else CSS_COLOR_NAMES.get(text.lower())
    if digits is None:
        raise FieldProblem(
            "bg_color",
            f"Invalid color format '{raw}'. Use hex format: #RGB, #RGBA, #RRGGBB, or #RRGGBBAA",
        )
    if len(digits) <= 4:  # #RGB, #RGBA: each digit stands for two
        digits = "".join(digit * 2 for digit in digits)
    red, green, blue, alpha = bytes.fromhex(digits.ljust(8, "f"))
    return red, green, blue, alpha


def error_body(status: int, message: str) -> dict[str, object]:
    """The API's JSON error body: ``{"error": …, "status": …}``."""
    return {"error": message, "status": status}


def validation_error_body(problems: list[FieldProblem], status: int = 400) -> dict[str, object]:
    """The body for refused fields: one is a plain error, several the multiple-errors shape."""
    if len(problems) == 1:
        return error_body(status, problems[0].message)
    return {
        "error": MSG_MULTIPLE_ERRORS,
        "details": [{"field": p.field, "message": p.message} for p in problems],
        "status": status,
    }
