"""Membership and credit usage, as typed values (the endpoint's JSON, in snake_case)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import attrs


def _utc(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, tz=timezone.utc)


@attrs.frozen(kw_only=True)
class BillingCycleSummary:
    """One billing period of the list mode: its window and its usage."""

    period_start_unix: int
    period_end_unix: int
    app_usage: int
    api_usage: int

    @property
    def period_start(self) -> datetime:
        """The start of the period, in UTC."""
        return _utc(self.period_start_unix)

    @property
    def period_end(self) -> datetime:
        """The end of the period (inclusive), in UTC."""
        return _utc(self.period_end_unix)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillingCycleSummary:
        """From one entry of ``billingCycles``."""
        return cls(
            period_start_unix=int(data["periodStartUnix"]),
            period_end_unix=int(data["periodEndUnix"]),
            app_usage=int(data.get("appUsage", 0)),
            api_usage=int(data.get("apiUsage", 0)),
        )


@attrs.frozen(kw_only=True)
class BillingCycle(BillingCycleSummary):
    """The current (or a chosen) billing window with its included and prepaid credits.

    ``stripe_billing_synced`` is False when the window fell back to the UTC calendar month.
    """

    included_credits: int
    prepaid_credits: int
    used_included_credits: int
    remaining_included_credits: int
    stripe_billing_synced: bool

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BillingCycle:
        """From the ``billingCycle`` object."""
        summary = BillingCycleSummary.from_json(data)
        return cls(
            **attrs.asdict(summary),
            included_credits=int(data.get("includedCredits", 0)),
            prepaid_credits=int(data.get("prepaidCredits", 0)),
            used_included_credits=int(data.get("usedIncludedCredits", 0)),
            remaining_included_credits=int(data.get("remainingIncludedCredits", 0)),
            stripe_billing_synced=bool(data.get("stripeBillingSynced", False)),
        )


@attrs.frozen(kw_only=True)
class MembershipUsage:
    """The plan, its credits, and the usage of the asked month or cycle."""

    membership: str
    credits: int
    prepaid_credits: int
    app_usage: int
    api_usage: int
    billing_cycle: BillingCycle | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MembershipUsage:
        """From the endpoint's JSON; unknown fields are ignored."""
        cycle = data.get("billingCycle")
        return cls(
            membership=str(data.get("membership", "")),
            credits=int(data.get("credits", 0)),
            prepaid_credits=int(data.get("prepaidCredits", 0)),
            app_usage=int(data.get("app_usage", 0)),
            api_usage=int(data.get("api_usage", 0)),
            billing_cycle=BillingCycle.from_json(cycle) if isinstance(cycle, dict) else None,
        )
