"""Batches on a Dask cluster (``pip install 'rembg-async[dask]'``).

```python
from dask.distributed import Client
from rembg_async import RemoveOptions
from rembg_async.dask import remove_many_dask

async with Client(scheduler, asynchronous=True) as dask_client:
    run = remove_many_dask(dask_client, inputs, RemoveOptions(format="png"),
                           output_dir="/shared/out", manifest="/shared/out/manifest.jsonl")
    async with run:
        async for item in run:      # BatchItem, in completion order, on the driver
            ...
```
"""

from ._extras import require_extra

require_extra("dask", "distributed", feature="rembg_async.dask")

from ._dask import DaskRun, remove_many_dask  # noqa: E402

__all__ = ["DaskRun", "remove_many_dask"]
