"""The end of a ``remove`` run: what was made, in how long, at what cost, and where it is.

In a terminal it is a table; anywhere else (a pipe, a log file) plain lines, one fact each,
that a log keeps legible and ``grep`` finds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, TextIO

import attrs

from ._batch_items import BatchItem
from ._cli_plain import has_rich
from ._limits import RateLimitState

#: Where the rate in force comes from, as the summary says it.
_SOURCES = {"learned": "learned", "server": "the API's headers", "fixed": "fixed"}


@attrs.frozen(kw_only=True)
class Summary:
    """A run's counts and costs."""

    made: int
    skipped: int
    failed: int
    cancelled: int
    elapsed: float
    credits: int  # what the server was asked to charge, or may have charged
    rate_limit: RateLimitState | None
    outputs: str

    @classmethod
    def of(
        cls,
        items: Sequence[BatchItem],
        *,
        elapsed: float | None,
        outputs: str,
        rate_limit: RateLimitState | None,
    ) -> Summary:
        """The summary of ``items``."""
        return cls(
            made=sum(1 for item in items if item.ok and not item.skipped),
            skipped=sum(1 for item in items if item.skipped),
            failed=sum(1 for item in items if item.error is not None),
            cancelled=sum(1 for item in items if item.cancelled),
            elapsed=elapsed or 0.0,
            credits=sum(item.credits for item in items),
            rate_limit=rate_limit,
            outputs=outputs,
        )

    @property
    def rate(self) -> float | None:
        """Images made per second (None when none was)."""
        return self.made / self.elapsed if self.made and self.elapsed > 0 else None

    def lines(self) -> list[str]:
        """The summary as plain lines."""
        counts = f"made {self.made}, skipped {self.skipped}, failed {self.failed}"
        lines = [f"{counts}, cancelled {self.cancelled}"]
        rate = "" if self.rate is None else f", {self.rate:.2f} images/s"
        lines.append(f"time {self.elapsed:.1f} s{rate}, credits {self.credits}")
        if self.rate_limit is not None:
            pace = describe_pace(self.rate_limit, short=False)
            lines.append(f"429s {self.rate_limit.throttled}, API rate {pace}")
        if self.outputs and self.made:
            lines.append(f"outputs in {self.outputs}")
        return lines


def describe_pace(state: RateLimitState, *, short: bool = True) -> str:
    """The rate requests were sent at, and why: ``8.5/s (learned)``; ``unpaced: no 429s``
    while the API has refused nothing (requests then go as fast as the concurrency allows)."""
    if state.rate is None:
        why = "no 429s" if state.adaptive else "no --rps"
        if short:
            return f"unpaced: {why}"
        return f"unpaced: {why}, so requests went as fast as --concurrency let them"
    return f"{state.rate:.3g}/s ({_SOURCES.get(state.source, state.source)})"


def print_summary(
    items: Sequence[Any],
    *,
    elapsed: float | None = None,
    outputs: str = "",
    rate_limit: RateLimitState | None = None,
) -> None:
    """How the batch went, to stderr (stdout stays for results): a table when both streams
    are a terminal and rich (the ``cli`` extra) is installed, plain lines otherwise."""
    summary = Summary.of(items, elapsed=elapsed, outputs=outputs, rate_limit=rate_limit)
    if sys.stderr.isatty() and sys.stdout.isatty() and has_rich():
        _print_table(summary)
    else:
        _print_lines(summary, sys.stderr)


def _print_lines(summary: Summary, stream: TextIO) -> None:
    print("\n".join(summary.lines()), file=stream, flush=True)


def _print_table(summary: Summary) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="rembg-async remove")
    row = [str(summary.made), str(summary.skipped), str(summary.failed)]
    columns = ["made", "skipped", "failed"]
    if summary.cancelled:
        columns.append("cancelled")  # only then: the table must fit 80 columns
        row.append(str(summary.cancelled))
    columns += ["time", "rate", "credits"]
    rate = "-" if summary.rate is None else f"{summary.rate:.2f}/s"
    row += [f"{summary.elapsed:.1f} s", rate, str(summary.credits)]
    if summary.rate_limit is not None:
        columns += ["api rate", "429s"]
        row += [describe_pace(summary.rate_limit), str(summary.rate_limit.throttled)]
    for column in columns:
        table.add_column(column, justify="right")
    table.add_row(*row)
    console = Console(stderr=True)
    console.print(table)
    if summary.outputs and summary.made:
        console.print(f"outputs in {escape(summary.outputs)}", highlight=False)
