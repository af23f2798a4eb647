"""``landseg prepare tile|stats|all --dask/--workers``: the stages of ``data/prepare/run.py`` on a Dask cluster.

The stages are the sequential ones; this module only makes the executor they take: a Dask client's
``concurrent.futures`` executor, so each scene (and each batch of chips for ``stats``) is a Dask
task, and everything that combines scenes stays in ``data/prepare``, in scene order.

Files must be visible to every worker under the same paths (a shared file system).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path

from distributed import Client
from landseg.data.prepare.config import PrepareConfig
from landseg.data.prepare.run import prepare_all
from landseg.distributed.cluster import dask_client


def cluster_executor(client: Client) -> Executor:
    """The client as a ``concurrent.futures.Executor`` for ``data.prepare``'s stages."""
    # Tasks write chips: never let Dask take two of them for one and run it once.
    return client.get_executor(pure=False)


@contextmanager
def dask_executor(address: str | None = None, workers: int | None = None) -> Iterator[Executor]:
    """The executor of the scheduler at ``address`` or of a new local cluster of ``workers`` processes."""
    with dask_client(address, workers) as client:
        yield cluster_executor(client)


def prepare_all_on_cluster(config: PrepareConfig, client: Client, **options) -> dict:
    """``run.prepare_all`` (same options) with the client's workers running the tasks; the cloud model's
    masks (``filters.max_cloud_fraction.source: model``) are written here first, where the workers read them."""
    options.setdefault("cloud_masker", model_cloud_masks)
    return prepare_all(config, executor=cluster_executor(client), **options)


def model_cloud_masks(images: Sequence[Path], out_dir: Path) -> dict[Path, Path]:
    """``predict.clouds.write_cloud_masks``, imported only when a preparation asks for the cloud model."""
    from landseg.predict.clouds import write_cloud_masks

    return write_cloud_masks(images, out_dir)
