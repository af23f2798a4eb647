"""Where landseg's Dask tasks run, and the models each worker keeps loaded.

``dask_client`` connects to a running scheduler (``--dask tcp://host:8786``: a cluster started by
dask-jobqueue, dask-kubernetes or ``dask scheduler`` / ``dask worker`` by hand) or starts a
``LocalCluster`` of worker processes on this machine (``--workers N``). Local workers get one task
slot each and an equal share of the cores for PyTorch / ONNX Runtime, so N workers never
oversubscribe the machine.

``EnsemblePlugin`` is a Dask worker plugin: registered once, it loads the ensemble on every worker
that exists or joins later (a worker restarted after a crash included), so a task never pays for
loading a model. Tasks find it with ``worker_ensemble``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from distributed import Client, LocalCluster, get_worker
from landseg.errors import ConfigError
from landseg.predict.choices import Engine, Precision, TTAMode

PLUGIN_NAME = "landseg-ensemble"


@contextmanager
def dask_client(address: str | None = None, workers: int | None = None) -> Iterator[Client]:
    """A client of the scheduler at ``address``, or of a new local cluster of ``workers`` processes
    (one task slot each), shut down on exit."""
    if address and workers:
        raise ConfigError("--dask and --workers exclude each other: a scheduler address uses its own workers")
    if address:
        try:
            client = Client(address, timeout="30s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
        try:
            yield client
        finally:
            client.close()
        return
    workers = workers or 1
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    # One task slot per process: the networks are the parallel part, each process runs one at a time.
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0")
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def local_threads(workers: int) -> int:
    """Each local worker's share of this machine's cores, for its networks."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@dataclass(frozen=True)
class EnsembleSource:
    """How to load an ensemble: everything ``load_ensemble`` takes, as plain picklable values."""

    checkpoints: tuple[str, ...]
    engine: Engine = "auto"
    tta: TTAMode | None = None
    device: str = "cpu"
    precision: Precision = "auto"
    tile: int | None = None
    threads: int | None = None
    """Intra-op threads of PyTorch and ONNX Runtime on each worker; None keeps the worker's setting."""

    @classmethod
    def of(cls, checkpoints, **options) -> EnsembleSource:
        """Model references (``predict.models``), files as absolute paths: workers may run in another
        directory (or on another machine sharing the files); a zoo model loads from the worker's landseg."""
        from landseg.predict.models import zoo_name

        return cls(tuple(str(c) if zoo_name(c) else str(Path(c).resolve()) for c in checkpoints), **options)

    def load(self):
        import torch

        from landseg.predict.ensemble import load_ensemble

        threads = self.threads or torch.get_num_threads()
        torch.set_num_threads(threads)
        return load_ensemble(
            list(self.checkpoints),
            engine=self.engine,
            tta=self.tta,
            device=self.device,
            precision=self.precision,
            tile=self.tile,
            threads=threads,
        )


class EnsemblePlugin(WorkerPlugin):
    """Loads ``source`` once on each worker (at registration, or when a worker joins or restarts)."""

    name = PLUGIN_NAME
    idempotent = False
    """Registering other models replaces the loaded ones."""

    def __init__(self, source: EnsembleSource):
        self.source = source
        self.ensemble = None

    def setup(self, worker) -> None:
        self.ensemble = self.source.load()

    def teardown(self, worker) -> None:
        self.ensemble = None


def register_ensemble(client: Client, source: EnsembleSource) -> None:
    """Load the models on every worker now; a bad checkpoint raises here, before any task runs.

    Workers that already hold these models (an earlier job on the same cluster) keep them.
    """
    holding = client.run(_holds, source)
    if holding and all(holding.values()):
        return
    client.register_plugin(EnsemblePlugin(source))


def _holds(source: EnsembleSource, dask_worker) -> bool:
    plugin = dask_worker.plugins.get(PLUGIN_NAME)
    return isinstance(plugin, EnsemblePlugin) and plugin.source == source and plugin.ensemble is not None


def worker_ensemble(source: EnsembleSource):
    """The ensemble this worker loaded for ``source`` (inside a task)."""
    plugin = get_worker().plugins.get(PLUGIN_NAME)
    if not isinstance(plugin, EnsemblePlugin) or plugin.source != source:
        # Another job registered other models on this shared cluster since this task was submitted.
        raise RuntimeError("this worker has other models loaded than the task was submitted for; rerun the job")
    return plugin.ensemble
