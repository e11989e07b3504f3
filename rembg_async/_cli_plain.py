"""The command line without rich: the base install's plain output, and the hint for bars.

rich is the ``cli`` extra (live bars, boxed tables). Without it every command still works and
says the same things in plain lines; on a terminal, ``remove`` says once how to get the bars.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

#: Printed once per run, on a terminal only (a pipe or a log never gets bars anyway).
BARS_HINT = "rembg-async: for live progress bars: pip install 'rembg-async[cli]'"


def has_rich() -> bool:
    """Whether rich (the ``cli`` extra) is installed."""
    return importlib.util.find_spec("rich") is not None


def wants_bars(args: Any) -> bool:
    """Whether ``remove`` draws live bars: on a terminal, not ``--quiet``, with rich installed;
    on a terminal without rich, say once how to get them."""
    if args.quiet or not sys.stdout.isatty():
        return False
    if has_rich():
        return True
    print(BARS_HINT, file=sys.stderr, flush=True)
    return False


def print_plain_usage(usage: Any, cycles: list[Any]) -> None:
    """``rembg-async usage`` as plain lines."""
    print(f"membership: {usage.membership}")
    print(f"credits: {usage.credits} included, {usage.prepaid_credits} prepaid")
    print(f"this month: {usage.api_usage} by API, {usage.app_usage} in the web app")
    if usage.billing_cycle is not None:
        cycle = usage.billing_cycle
        print(
            f"this cycle ({cycle.period_start:%Y-%m-%d} to {cycle.period_end:%Y-%m-%d}): "
            f"{cycle.used_included_credits} used, {cycle.remaining_included_credits} left"
        )
    if cycles:
        print("billing cycles (start, end, api, app):")
    for entry in cycles:
        print(
            f"  {entry.period_start:%Y-%m-%d}  {entry.period_end:%Y-%m-%d}  "
            f"{entry.api_usage}  {entry.app_usage}"
        )
