"""``landseg predict --dask ADDRESS`` and ``--workers N``: the client side of distributed prediction.

``run_predict_distributed`` is ``predict.run.run_predict`` on a Dask cluster: the same inputs,
skipping of finished scenes, outputs and summary. It registers the models on the workers, submits one
plan task per scene and, as each plan comes back, the scene's block tasks and its assembly
(``predict_tasks``), then reports scenes as they finish. Progress counts tiles across the whole
cluster: each block task reports its tiles through Dask's event log. ``predict_on_cluster`` opens the
client (scheduler address or local cluster) around it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from distributed.scheduler import KilledWorker
from rich.console import Console
from rich.markup import escape

from distributed import Client, Future, as_completed
from landseg.distributed.cluster import EnsembleSource, dask_client, local_threads, register_ensemble
from landseg.distributed.predict_tasks import (
    PROGRESS_TOPIC,
    ScenePlan,
    assemble_scene,
    plan_scene,
    predict_block,
    work_digest,
)
from landseg.errors import DataError, LandsegError
from landseg.predict.choices import Engine, Precision, TTAMode
from landseg.predict.engine import PredictOptions, SceneResult
from landseg.predict.inputs import PredictSummary, plan_inputs
from landseg.predict.progress import counting_bar

ASSEMBLY_PRIORITY = 10
"""Finishing a scene goes before starting more blocks: outputs appear early and block files go away."""


class ClusterProgress:
    """One bar over the tiles of every planned scene, fed by block tasks on any worker."""

    def __init__(self, console: Console, scenes: int):
        self.bar = counting_bar(console, "tiles")
        self.scenes, self.finished = scenes, 0
        self.task = self.bar.add_task(self._description(), total=None)
        self.totals: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self.lock = threading.Lock()

    def _description(self) -> str:
        return f"{self.finished}/{self.scenes} scenes"

    def planned(self, plan: ScenePlan) -> None:
        with self.lock:
            for index in range(len(plan.blocks)):
                self.totals[plan.block_key(index)] = plan.block_tiles(index)
                self.done.setdefault(plan.block_key(index), 0)
            self._refresh()

    def tiles(self, event) -> None:
        """Dask event handler: ``(timestamp, {"block": key, "tiles": n})``; a rerun block never overcounts."""
        _, message = event
        with self.lock:
            key = message["block"]
            if key in self.totals:
                self.done[key] = min(self.totals[key], self.done[key] + message["tiles"])
                self._refresh()

    def block_done(self, key: str) -> None:
        with self.lock:
            self.done[key] = self.totals.get(key, 0)
            self._refresh()

    def scene_done(self) -> None:
        with self.lock:
            self.finished += 1
            self._refresh()

    def _refresh(self) -> None:
        self.bar.update(
            self.task,
            total=sum(self.totals.values()) or None,
            completed=sum(self.done.values()),
            description=self._description(),
        )


def run_predict_distributed(
    inputs: Sequence[str | Path],
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    client: Client,
    options: PredictOptions | None = None,
    engine: Engine = "auto",
    tta: TTAMode | None = None,
    precision: Precision = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    threads: int | None = None,
    console: Console | None = None,
) -> PredictSummary:
    """``run_predict`` with the scenes' blocks as tasks of ``client``'s cluster; files must be visible to
    every worker under the same paths (a shared file system). ``threads``: network threads per worker."""
    options = options or PredictOptions()
    options.check()
    out_dir = Path(out_dir).resolve()
    console = console or Console(stderr=True)
    paths, todo, summary = plan_inputs(inputs, out_dir, options, overwrite, console)
    todo = [path.resolve() for path in todo]
    if not todo:
        return summary
    models = EnsembleSource.of(
        checkpoints, engine=engine, tta=tta, device=device, precision=precision, tile=options.tile, threads=threads
    )
    register_ensemble(client, models)
    workers = len(client.scheduler_info(n_workers=-1)["workers"])
    console.print(
        f"models loaded on {workers} Dask worker{'s' if workers != 1 else ''}: "
        + ", ".join(Path(c).name for c in models.checkpoints)
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = ClusterProgress(console, len(todo))
    client.subscribe_topic(PROGRESS_TOPIC, progress.tiles)
    try:
        with progress.bar:
            _run(client, todo, out_dir, models, options, progress, summary, console, single=len(paths) == 1)
    finally:
        client.unsubscribe_topic(PROGRESS_TOPIC)
    return summary


def _run(client, todo, out_dir, models, options, progress, summary, console, single) -> None:
    pending = as_completed()
    roles: dict[str, tuple[str, Path]] = {}
    scene_futures: dict[Path, list[Future]] = {}
    for path in todo:
        digest = work_digest(path, out_dir, models, options)
        future = client.submit(
            plan_scene,
            path,
            out_dir / f".{path.stem}.blocks-{digest}",
            path.stem,
            digest,
            models,
            options,
            key=f"landseg-plan-{path.stem}-{digest}",
        )
        roles[future.key] = ("plan", path)
        scene_futures[path] = [future]
        pending.add(future)
    for future in pending:
        role, path = roles.pop(future.key)
        if future.status == "cancelled":
            continue
        if future.status == "error":
            if role == "block":
                continue  # the scene's assembly fails with the same error
            failure = _failure(future, path)
            client.cancel(scene_futures.pop(path, []))
            progress.scene_done()
            if single:
                raise failure
            summary.failed.append(failure)
            console.print(f"[red]failed[/] {escape(str(failure))}", highlight=False, soft_wrap=True)
            continue
        if role == "plan":
            plan: ScenePlan = future.result()
            progress.planned(plan)
            blocks = [
                client.submit(predict_block, plan, i, models, options, key=plan.block_key(i))
                for i in range(len(plan.blocks))
            ]
            assembly = client.submit(
                assemble_scene,
                plan,
                out_dir,
                models,
                options,
                blocks,
                key=f"landseg-assemble-{plan.stem}-{plan.digest}",
                priority=ASSEMBLY_PRIORITY,
            )
            for block in blocks:
                roles[block.key] = ("block", path)
            roles[assembly.key] = ("scene", path)
            scene_futures[path] = [*blocks, assembly]
            pending.update([*blocks, assembly])
        elif role == "block":
            progress.block_done(future.key)
        else:
            result: SceneResult = future.result()
            scene_futures.pop(path, None)
            progress.scene_done()
            summary.done.append(result)
            outputs = ", ".join(p.name for k, p in result.paths.items() if k != "record")
            console.print(
                f"[green]{path.name}[/] {result.width}x{result.height} px, {result.tiles} tiles, "
                f"{result.stages.get('predict', 0.0):.1f} worker-s -> {out_dir}/ {outputs}"
            )


def _failure(future: Future, path: Path) -> LandsegError:
    """A user-facing error for a failed scene; anything else is a bug and propagates."""
    error = future.exception()
    if isinstance(error, LandsegError):
        return error
    if isinstance(error, KilledWorker):
        return DataError("its tasks killed Dask workers again and again (out of memory? see the worker logs)", path)
    raise error


def predict_on_cluster(
    inputs: Sequence[str | Path],
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    address: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    **run_options,
) -> PredictSummary:
    """``run_predict_distributed`` on the scheduler at ``address`` or on a local cluster of ``workers``
    processes (each given its share of the cores unless ``threads`` says otherwise)."""
    if workers and threads is None:
        threads = local_threads(workers)
    with dask_client(address, workers) as client:
        return run_predict_distributed(inputs, checkpoints, out_dir, client, threads=threads, **run_options)
