"""RemoveOptions: what to do with the image, checked on construction like the server does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, TypedDict

import attrs

from ._contract import (
    DEFAULT_FORMAT,
    MSG_MASK_WITH_BG_COLOR,
    MSG_MULTIPLE_ERRORS,
    FieldProblem,
    check_angle,
    check_dimension,
    integer_problem,
    parse_color,
    parse_format,
)
from ._exceptions import InvalidInputError

#: An output format. Strings are also checked at run time (case-insensitively), for values that
#: come from configuration or the command line.
OutputFormat = Literal["png", "jpeg", "jpg", "webp", "bmp"]


@attrs.frozen(kw_only=True)
class RemoveOptions:
    """The options of a background removal; every one optional.

    - ``format``: ``"webp"``, ``"png"``, ``"jpeg"`` (or ``"jpg"``), ``"bmp"``; None (the
      default) lets an ``output_path``'s extension choose, as Pillow's ``save()`` does, and
      means ``"webp"`` (the API's default) otherwise.
    - ``w``, ``h``: target size in pixels (1 … 10,000); the aspect ratio is kept, fitting
      inside both when both are given, unless ``exact_resize``.
    - ``mask``: return only the alpha mask; not with ``bg_color``.
    - ``bg_color``: ``#RGB``, ``#RGBA``, ``#RRGGBB``, ``#RRGGBBAA`` or a CSS colour name.
    - ``angle``: degrees of rotation, -360 … 360; ``expand`` pads the canvas to fit.

    Invalid values raise ``InvalidInputError`` with the server's own messages, all of
    them at once.
    """

    format: OutputFormat | None = None
    w: int | None = None
    h: int | None = None
    exact_resize: bool = False
    mask: bool = False
    bg_color: str | None = None
    angle: float = 0
    expand: bool = True

    def __attrs_post_init__(self) -> None:
        problems = []
        for field, check in _CHECKS.items():  # in the order the API lists its fields
            try:
                check(field, getattr(self, field))
            except FieldProblem as problem:
                problems.append(problem)
        color_refused = any(problem.field == "bg_color" for problem in problems)
        if self.mask is True and self.bg_color is not None and not color_refused:
            problems.append(FieldProblem("bg_color", MSG_MASK_WITH_BG_COLOR))
        if problems:
            message = problems[0].message if len(problems) == 1 else MSG_MULTIPLE_ERRORS
            raise InvalidInputError(message, [(p.field, p.message) for p in problems])

    def form_fields(self) -> dict[str, str]:
        """The form fields to send: only those that differ from the API's defaults."""
        fields = {
            "format": "" if self.output_format == DEFAULT_FORMAT else self.output_format,
            "w": str(self.w or ""),
            "h": str(self.h or ""),
            "exact_resize": "true" if self.exact_resize else "",
            "mask": "true" if self.mask else "",
            "expand": "" if self.expand else "false",
            "bg_color": self.bg_color or "",
            "angle": repr(float(self.angle)) if self.angle else "",
        }
        return {name: value for name, value in fields.items() if value}  # "": the default

    @property
    def output_format(self) -> str:
        """The canonical output format (``jpg`` becomes ``jpeg``; none given: the API's
        default, ``webp``)."""
        return DEFAULT_FORMAT if self.format is None else parse_format(self.format)


# Each check refuses a Python value as the server refuses its text, in the server's words.
def _text(field: str, value: object) -> str:
    if not isinstance(value, str):
        raise FieldProblem(field, f"'{field}' must be a string, got: {value!r}")
    return value


def _format(field: str, value: object) -> None:
    if value is not None:
        parse_format(_text(field, value))


def _color(field: str, value: object) -> None:
    if value is not None:
        parse_color(_text(field, value))


def _dimension(field: str, value: object) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise integer_problem(field, value)
    check_dimension(field, value)  # 0 means unset, as on the server


def _boolean(field: str, value: object) -> None:
    if not isinstance(value, bool):
        raise FieldProblem(field, f"'{field}' must be a boolean (true or false), got: '{value}'")


def _angle(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FieldProblem(field, f"'{field}' must be a number, got: '{value}'")
    check_angle(float(value))


_CHECKS: Final[dict[str, Callable[[str, object], None]]] = {
    "format": _format,
    "w": _dimension,
    "h": _dimension,
    "exact_resize": _boolean,
    "mask": _boolean,
    "bg_color": _color,
    "angle": _angle,
    "expand": _boolean,
}
#: rembg.js's option names that differ from the RemoveOptions fields they become.
_REMBG_JS_NAMES: Final = {"returnMask": "mask"}


def options_from_mapping(options: Mapping[str, Any]) -> tuple[RemoveOptions, bool]:
    """RemoveOptions (and ``returnBase64``) from a dict with rembg.js's option names, or
    Python's (``mask``); unknown names are an error, not ignored."""
    values: dict[str, Any] = {}
    return_base64 = False
    for name, value in options.items():
        field = _REMBG_JS_NAMES.get(name, name)
        if name in ("returnBase64", "return_base64"):
            return_base64 = bool(value)
        elif field not in _CHECKS:
            raise InvalidInputError(
                f"Unknown option {name!r}", [(name, f"Unknown option {name!r}")]
            )
        elif value is not None:
            values[field] = value
    for size in ("w", "h"):
        if values.get(size) == 0:  # rembg.js's way to leave a size unset
            values[size] = None
    return RemoveOptions(**values), return_base64


class _ImageOptions(TypedDict, total=False):
    """The options every rembg.js-style dict may hold."""

    format: OutputFormat
    w: int | None
    h: int | None
    exact_resize: bool
    returnMask: bool
    mask: bool
    bg_color: str | None
    angle: float
    expand: bool


class ImageFileOptions(_ImageOptions, total=False):
    """The rembg.js-style options dict of a call whose result is an ImageFile.

    The names are rembg.js's (``returnMask``); Python's (``mask``) are accepted too.
    """

    returnBase64: Literal[False]


class _ReturnsBase64(TypedDict):
    returnBase64: Literal[True]


class Base64Options(_ReturnsBase64, _ImageOptions, total=False):
    """The rembg.js-style options dict with ``"returnBase64": True``: a Base64Image result."""


def resolve_options(
    options: RemoveOptions | Mapping[str, Any] | None, return_base64: bool
) -> tuple[RemoveOptions, bool]:
    """The options as a `RemoveOptions`, and whether base64 is asked for (by the flag, or by
    ``returnBase64`` in a dict)."""
    if options is None:
        return RemoveOptions(), return_base64
    if isinstance(options, RemoveOptions):
        return options, return_base64
    resolved, mapping_base64 = options_from_mapping(options)
    return resolved, return_base64 or mapping_base64
