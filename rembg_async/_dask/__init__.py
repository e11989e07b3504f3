"""Batches on a Dask cluster: see `rembg_async.dask`."""

from ._driver import DaskRun, remove_many_dask

__all__ = ["DaskRun", "remove_many_dask"]
