"""Where the per-scene work of a preparation runs: in this process, or on a ``concurrent.futures.Executor``.

Every stage takes ``executor``: ``None`` runs its tasks one after another in this process; any
``concurrent.futures.Executor`` runs them in parallel, e.g. ``ProcessPoolExecutor`` or a Dask
cluster's ``distributed.Client.get_executor()`` (what ``--workers`` and ``--dask`` use). Tasks are
top-level functions with picklable arguments, and their results are combined in submission order,
so the outputs do not depend on which worker finished first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, as_completed
from typing import Any, TypeVar

import rasterio

GDAL_CACHE_MB = 256
"""GDAL's block cache; bounded so memory stays flat whatever the scene size."""

Item = TypeVar("Item")


def bounded_gdal() -> rasterio.Env:
    """The GDAL environment of every task: a worker process starts with GDAL's own, larger cache."""
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)


def map_in_order(
    executor: Executor | None,
    function: Callable[[Item], Any],
    items: Iterable[Item],
    on_result: Callable[[Any], None] | None = None,
) -> list:
    """``[function(item) for item in items]``, on ``executor`` if given; ``on_result`` sees each result
    as it arrives (for progress), the list keeps the order of ``items``."""
    if executor is None:
        results = []
        for item in items:
            results.append(function(item))
            if on_result is not None:
                on_result(results[-1])
        return results
    futures = {executor.submit(function, item): i for i, item in enumerate(items)}
    results = [None] * len(futures)
    try:
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if on_result is not None:
                on_result(results[futures[future]])
    finally:
        for future in futures:  # after a failure: stop tasks that would write into a run already lost
            future.cancel()
    return results


def batches(items: Sequence[Item], size: int, executor: Executor | None) -> list[list[Item]]:
    """Tasks' shares of ``items``: ``size`` each on an executor; one share in this process, so that
    float statistics are accumulated in the same order (to the last bit) as they always were."""
    if executor is None:
        return [list(items)]
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
