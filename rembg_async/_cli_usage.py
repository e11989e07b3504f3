"""``rembg-async usage``: the plan, the credits and the billing cycles."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._cli import _server_for, client_for
from ._loops import run as run_loop


def run_usage_command(args: argparse.Namespace) -> int:
    """``rembg-async usage``: the plan, credits, usage and (with --cycles) billing cycles."""
    from ._cli_plain import has_rich, print_plain_usage
    from ._exceptions import RembgError

    with _server_for(args) as (base_url, api_key):

        async def fetch() -> tuple[Any, list[Any]]:
            async with client_for(args, base_url, api_key) as client:
                usage = await client.membership_usage(billing_cycle=True)
                cycles = await client.billing_cycles() if args.cycles else []
                return usage, cycles

        try:
            usage, cycles = run_loop(fetch())
        except RembgError as error:
            print(f"rembg-async usage: {error}", file=sys.stderr)
            return 1
        except ValueError as error:  # a key that cannot be sent (a pasted line end)
            print(f"rembg-async usage: {error}", file=sys.stderr)
            return 2
    if not has_rich():  # the base install: plain lines
        print_plain_usage(usage, cycles)
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    console.print(f"membership: [bold]{escape(usage.membership)}[/bold]")  # the server's text
    console.print(f"credits: {usage.credits} included, {usage.prepaid_credits} prepaid")
    console.print(f"this month: {usage.api_usage} by API, {usage.app_usage} in the web app")
    if usage.billing_cycle is not None:
        cycle = usage.billing_cycle
        console.print(
            f"this cycle ({cycle.period_start:%Y-%m-%d} to {cycle.period_end:%Y-%m-%d}): "
            f"{cycle.used_included_credits} used, {cycle.remaining_included_credits} left"
        )
    if cycles:
        table = Table(title="billing cycles")
        for column in ("start", "end", "api", "app"):
            table.add_column(column)
        for entry in cycles:
            table.add_row(
                f"{entry.period_start:%Y-%m-%d}", f"{entry.period_end:%Y-%m-%d}",
                str(entry.api_usage), str(entry.app_usage),
            )  # fmt: skip
        console.print(table)
    return 0
