"""The public API used as a user would; ``mypy --strict`` must accept it (CI checks it).

Not collected by pytest: it is a type-checking test, and it would need a running server.
"""

from __future__ import annotations

from pathlib import Path

from rembg_async import (
    APIStatusError,
    AsyncRembg,
    Base64Image,
    BillingCycleSummary,
    BudgetExhaustedError,
    CreditBudget,
    ImageFile,
    InvalidInputError,
    LocalCreditBudget,
    MembershipUsage,
    ProgressEvent,
    RateLimitError,
    RemoveOptions,
    RetryPolicy,
    Timeout,
    rembg,
)


def show(event: ProgressEvent) -> None:
    print(event.loaded, event.total, event.progress, event.rate, event.estimated, event.to_dict())


async def show_async(event: ProgressEvent) -> None:
    show(event)


async def main() -> None:
    result = await rembg(api_key="key", input_image="input.png", on_upload_progress=show)
    print(result.output_image_path)
    await result.cleanup()

    policy = RetryPolicy(max_retries=5, max_retry_after=30, wait=False)
    async with AsyncRembg(
        api_key="key", retry=policy, timeout=Timeout(connect=5, read=30), max_concurrency=8
    ) as client:
        image: ImageFile = await client.remove(
            "cat.jpg",
            RemoveOptions(format="png", w=800, bg_color="#ffffff"),
            on_download_progress=show_async,
        )
        path: Path = image.output_image_path
        print(path, image.content_type, image.size)
        async with image:
            pass
        b64: Base64Image = await client.remove(b"...", return_base64=True)
        print(b64.base64_image)
        saved: ImageFile = await client.remove(
            {"base64": "..."}, output_path="out/cat.webp", timeout=Timeout(attempt=60)
        )
        print(saved)
        quick: Base64Image = await client.remove(b"...", return_base64=True, timeout=5)
        print(quick)
        async with AsyncRembg(timeout=2.5, trust_env=False):
            pass
        usage: MembershipUsage = await client.membership_usage(billing_cycle=True)
        cycles: list[BillingCycleSummary] = await client.billing_cycles()
        print(usage.credits, [cycle.period_start for cycle in cycles])
        try:
            await client.remove("x.png", {"returnMask": True})
        except InvalidInputError as error:
            details: tuple[tuple[str, str], ...] = error.details
            print(details)
        except RateLimitError as error:
            print(error.retry_after, error.scope)
        except APIStatusError as error:
            print(error.status, error.message)


class SharedBudget:
    """A budget shared by a fleet would implement CreditBudget like this (issue 13's twin)."""

    async def reserve(self, credits: int) -> bool:
        return credits > 0

    async def settle(self, reserved: int, spent: int) -> None:
        print(reserved, spent)

    def exhausted(self) -> BudgetExhaustedError:
        return BudgetExhaustedError(0, 0)


async def batch(client: AsyncRembg, paths: list[str]) -> None:
    shared: CreditBudget = SharedBudget()
    async with client.remove_many(
        paths, {"format": "png"}, output_dir="out", root="photos", max_credits=10
    ) as run:
        async for item in run:
            attempts: int = item.attempts
            print(item.status, attempts, item.credits)
        if isinstance(run.stopped, BudgetExhaustedError):
            print(run.stopped.spent, run.credits, [value async for value in run.remaining])
    run = client.remove_many(paths, budget=shared, overwrite=True)
    run.stop()
    print(LocalCreditBudget(5).max_credits)
