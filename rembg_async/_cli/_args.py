"""Checked argument types of the command line: a bad value is argparse's one-line error, exit 2."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from .._storage._stores import is_remote


def fail(command: str, message: object, code: int = 2) -> int:
    """Say why ``rembg-async COMMAND`` stops (on stderr); ``code`` is its exit code."""
    print(f"rembg-async {command}: {message}", file=sys.stderr, flush=True)
    return code


def whole(least: int, most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``least`` (and at most ``most``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
        if most is not None and value > most:
            raise argparse.ArgumentTypeError(f"must be at most {most}, not {value}")
        return value

    return parse


def positive(what: str) -> Callable[[str], float]:
    """An argparse type: a positive, finite number (``what`` names it in messages)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a {what}: {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a positive {what}, not {text}")
        return value

    return parse


#: An argparse type: a positive, finite number of seconds.
seconds = positive("number of seconds")


def share(text: str) -> float:
    """An argparse type: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be from 0 to 1, not {text}")
    return value


#: An argparse type: a TCP port (0: any free one).
port = whole(0, 65535)


def place(text: str) -> Path | str:
    """An argparse type: a local path, or a remote URL kept as it is."""
    return text if is_remote(text) else Path(text)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse adds the whole usage block)."""

    def error(self, message: str) -> NoReturn:
        """Say what is wrong in one line, and exit 2 as argparse does."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that ends each option with its default, when it has one worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        empty = default is None or default is False or default == [] or default == argparse.SUPPRESS
        if "%(default)" in text or empty:
            return text
        return f"{text} (default: %(default)s)"
