"""The ``rembg-async`` command line: one module per command (``add_arguments`` and ``run``);
what they share is in ``_connect`` (key, base URL, ``--local``, ``--redis``), ``_report``
(plain and rich output) and ``_args`` (argument types)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .._version import __version__
from . import remove, serve, usage
from ._args import DefaultsFormatter, Parser

DESCRIPTION = (
    "Remove the background of images with the RemBG API (remove), show the account's "
    "credits (usage), or run a local RemBG-compatible server (serve)."
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = Parser(prog="rembg-async", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add = parser.add_subparsers(dest="command", required=True).add_parser
    remove.add_arguments(add("remove", help="remove the background of images"))
    usage.add_arguments(add("usage", help="show the membership, credits and billing cycles"))
    serving = "run the local RemBG-compatible server"
    serve.add_arguments(add("serve", help=serving, formatter_class=DefaultsFormatter))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rembg-async`` command: 130 on a Ctrl-C that nothing else took,
    141 when the reader of the output went away (``| head``), and never a traceback for either."""
    args = build_parser().parse_args(argv)
    _show_library_warnings()
    command = {"remove": remove.run, "usage": usage.run, "serve": serve.run}[args.command]
    try:
        return command(args)
    except KeyboardInterrupt:  # while starting up or importing: nothing was sent
        return 130
    except BrokenPipeError:
        # As ``find | head`` does: stop quietly; stdout goes to /dev/null so that the
        # interpreter's final flush does not complain about the pipe a second time.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE if hasattr(signal, "SIGPIPE") else 1


class _ToStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the ``sys.stderr`` of the moment (rich's live display replaces it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass  # always sys.stderr


def _show_library_warnings() -> None:
    """The library's warnings (an anonymous call, Redis unreachable) as lines of ours, not
    logging's bare last resort; not a retry's give-up: the image's failed line says it."""
    logger = logging.getLogger("rembg_async")
    if any(isinstance(handler, _ToStderr) for handler in logger.handlers):
        return
    handler = _ToStderr()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("rembg-async: %(message)s"))
    handler.addFilter(lambda record: record.name != "rembg_async.retry")
    logger.addHandler(handler)
