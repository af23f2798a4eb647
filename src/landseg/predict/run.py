"""``landseg predict`` without the command line: many inputs, one engine, resumable.

``run_predict`` expands files, folders and glob patterns (``inputs.py``), loads the models once,
predicts every scene with ``engine.predict_scene`` and skips scenes whose outputs are all there from an
earlier run (``overwrite`` redoes them). A scene that fails is reported and the others go on.

Two runs writing the same output folder take turns scene by scene: ``predict_scene`` writes each scene's
outputs under an exclusive lock (``io.locks``), and a run that waited for another skips the scene the
other finished (or, with ``overwrite``, writes it again, to the same result); never a mixed or
half-written set.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

from landseg.errors import LandsegError
from landseg.predict.inputs import PredictSummary, plan_inputs
from landseg.predict.progress import counting_bar, set_total

if TYPE_CHECKING:
    from landseg.predict.choices import Engine, Precision, TTAMode
    from landseg.predict.engine import PredictOptions


def run_predict(
    inputs: Sequence[str | Path],
    checkpoints: Sequence[str | Path],
    out_dir: str | Path,
    options: PredictOptions | None = None,
    engine: Engine = "auto",
    tta: TTAMode | None = None,
    precision: Precision = "auto",
    device: str = "cpu",
    overwrite: bool = False,
    console: Console | None = None,
) -> PredictSummary:
    """Predict every input into ``out_dir``; a single input's failure is raised, several are collected."""
    from landseg.predict.engine import PredictOptions, predict_scene
    from landseg.predict.ensemble import load_ensemble
    from landseg.predict.int8 import describe_member

    options = options or PredictOptions()
    options.check()
    out_dir = Path(out_dir)
    console = console or Console(stderr=True)
    paths, todo, summary = plan_inputs(inputs, out_dir, options, overwrite, console)
    if not todo:
        return summary
    ensemble = load_ensemble(checkpoints, engine=engine, tta=tta, device=device, precision=precision, tile=options.tile)
    console.print("models: " + ", ".join(describe_member(m) for m in ensemble.members))
    out_dir.mkdir(parents=True, exist_ok=True)

    def waiting(path: Path) -> None:
        console.print(f"{path.name}: another landseg run is writing its outputs in {out_dir}; waiting for it")

    with counting_bar(console, "tiles") as bar:
        for path in todo:
            task = bar.add_task(path.name, total=None)
            try:
                # A run that waited for another writing this scene may find it finished (``predict_scene``).
                result = predict_scene(
                    path,
                    ensemble,
                    out_dir,
                    options,
                    on_start=partial(set_total, bar, task),
                    on_tiles=partial(bar.advance, task),
                    skip_finished=not overwrite,
                    on_wait=partial(waiting, path),
                )
            except LandsegError as exc:
                if len(paths) == 1:
                    raise
                summary.failed.append(exc)
                console.print(f"[red]failed[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
                continue
            finally:
                bar.remove_task(task)
            if result.skipped:
                summary.skipped.append(path)
                console.print(f"[dim]{path.name}: finished by the other run, skipped[/]")
                continue
            summary.done.append(result)
            outputs = ", ".join(p.name for k, p in result.paths.items() if k != "record")
            clouds = (
                ""
                if result.clouds is None
                else f", {100 * result.clouds['masked_fraction']:.1f} % under cloud or shadow"
            )
            console.print(
                f"[green]{path.name}[/] {result.width}x{result.height} px, {result.tiles} tiles{clouds} in "
                f"{result.seconds:.1f} s -> {out_dir}/ {outputs}"
            )
    return summary
