"""``rembg-async remove --dask ADDRESS``: the batch on a Dask cluster (``local:N`` starts a
LocalCluster of N worker processes), one line per image as it completes."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

from ._args import fail
from ._connect import client_options, redis_url
from ._plan import Job
from ._report import Outcomes, PlainReporter


async def run_on_dask(job: Job, outcomes: Outcomes) -> int | None:
    """Run the batch on the cluster ``--dask`` names; 2 when the extra is missing."""
    try:
        from distributed import Client, LocalCluster

        from ..dask import remove_many_dask
    except ModuleNotFoundError as error:
        return fail("remove", f"--dask: {error}")
    args = job.args
    reporter = PlainReporter(sys.stdout, quiet=args.quiet)
    async with contextlib.AsyncExitStack() as stack:
        address: Any = args.dask
        if address.startswith("local:"):
            address = await stack.enter_async_context(
                LocalCluster(
                    n_workers=int(address.partition(":")[2] or 2),
                    threads_per_worker=1,
                    processes=True,
                    asynchronous=True,
                    dashboard_address="127.0.0.1:0",  # None still takes port 8787
                )
            )
        dask_client = await stack.enter_async_context(Client(address, asynchronous=True))
        run = remove_many_dask(
            dask_client,
            iter(job.inputs),  # submitted as they are walked
            job.options,
            output_dir=args.output_dir,
            root=job.inputs.place,
            manifest=args.manifest,
            concurrency_per_worker=args.concurrency,
            client_options=client_options(args, job.base_url, job.api_key),
            redis_url=redis_url(args),
        )
        async with run:
            async for item in run:
                reporter.item_done(item)
                outcomes.add(item)
    return 1 if run.stopped is not None else None
