"""``rembg-async usage``: the plan, the credits and the billing cycles."""

from __future__ import annotations

import argparse

from .._exceptions import RembgError
from .._loops import run as run_loop
from .._usage import BillingCycleSummary, MembershipUsage
from ._args import fail
from ._connect import add_connection_arguments, client_for, server_for
from ._report import has_rich


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``usage``."""
    parser.add_argument("--cycles", action="store_true", help="also list the billing cycles")
    add_connection_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """``rembg-async usage``: the plan, credits, usage and (with --cycles) billing cycles."""
    with server_for(args) as (base_url, api_key):

        async def fetch() -> tuple[MembershipUsage, list[BillingCycleSummary]]:
            async with client_for(args, base_url, api_key) as client:
                usage = await client.membership_usage(billing_cycle=True)
                cycles = await client.billing_cycles() if args.cycles else []
                return usage, cycles

        try:
            usage, cycles = run_loop(fetch())
        except RembgError as error:
            return fail("usage", error, 1)
        except ValueError as error:  # a key that cannot be sent (a pasted line end)
            return fail("usage", error)
    if has_rich():
        _print_rich(usage, cycles)
    else:  # the base install: plain lines
        print("\n".join(_lines(usage, usage.membership)))
        if cycles:
            print("billing cycles (start, end, api, app):")
        for entry in cycles:
            print("  " + "  ".join(_cells(entry)))
    return 0


def _lines(usage: MembershipUsage, membership: str) -> list[str]:
    """The account in a few lines (``membership`` as it is to be shown)."""
    lines = [
        f"membership: {membership}",
        f"credits: {usage.credits} included, {usage.prepaid_credits} prepaid",
        f"this month: {usage.api_usage} by API, {usage.app_usage} in the web app",
    ]
    if usage.billing_cycle is not None:
        cycle = usage.billing_cycle
        lines.append(
            f"this cycle ({cycle.period_start:%Y-%m-%d} to {cycle.period_end:%Y-%m-%d}): "
            f"{cycle.used_included_credits} used, {cycle.remaining_included_credits} left"
        )
    return lines


def _cells(entry: BillingCycleSummary) -> list[str]:
    """A billing cycle's start, end, API and app usage."""
    return [
        f"{entry.period_start:%Y-%m-%d}", f"{entry.period_end:%Y-%m-%d}",
        str(entry.api_usage), str(entry.app_usage),
    ]  # fmt: skip


def _print_rich(usage: MembershipUsage, cycles: list[BillingCycleSummary]) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for line in _lines(usage, f"[bold]{escape(usage.membership)}[/bold]"):  # the server's text
        console.print(line)
    if cycles:
        table = Table(title="billing cycles")
        for column in ("start", "end", "api", "app"):
            table.add_column(column)
        for entry in cycles:
            table.add_row(*_cells(entry))
        console.print(table)
