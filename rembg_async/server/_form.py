"""From the form's text fields to `RenderOptions`, collecting every problem at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

from .._contract import (
    MSG_MASK_WITH_BG_COLOR,
    FieldProblem,
    parse_angle,
    parse_boolean,
    parse_color,
    parse_dimension,
    parse_format,
)
from ._imaging import RenderOptions


class InvalidFields(Exception):
    """One or more fields were refused, in the order the API lists its fields."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


_PARSERS: Final[dict[str, Callable[[str], object]]] = {
    "format": parse_format,
    "w": lambda raw: parse_dimension("w", raw),
    "h": lambda raw: parse_dimension("h", raw),
    "exact_resize": lambda raw: parse_boolean("exact_resize", raw),
    "mask": lambda raw: parse_boolean("mask", raw),
    "bg_color": parse_color,
    "angle": parse_angle,
    "expand": lambda raw: parse_boolean("expand", raw),
}


def parse_options(fields: Mapping[str, str]) -> RenderOptions:
    """The options the form asks for; an absent or empty field keeps its default.

    **[decision]** an empty value means "unset", like ``w=0``: clients build forms from
    optional values and send empty strings for the ones they lack.
    """
    values: dict[str, object] = {}
    problems: list[FieldProblem] = []
    for name, parse in _PARSERS.items():
        raw = fields.get(name)
        if not raw or not raw.strip():
            continue
        try:
            values[name] = parse(raw)
        except FieldProblem as problem:
            problems.append(problem)
    if values.get("mask") is True and values.get("bg_color") is not None:
        problems.append(FieldProblem("bg_color", MSG_MASK_WITH_BG_COLOR))
    if problems:
        raise InvalidFields(problems)
    return RenderOptions(**values)  # type: ignore[arg-type]
