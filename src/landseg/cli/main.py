"""The ``landseg`` command line: the Typer app and the commands that need no module of their own.

Every command is a thin wrapper that parses, calls the library and prints; nothing in landseg imports
this package.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from landseg.cli.errors import console, friendly_errors, set_debug

app = typer.Typer(
    help="Land-cover maps from satellite and aerial imagery: train, evaluate, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False):
    set_debug(debug)


@app.command()
@friendly_errors
def datasets():
    """List the built-in class schemas (names, colours, codes)."""
    from landseg.classes import BUILTIN_SCHEMAS, color_hex

    table = Table(title="Built-in class schemas (use as data.schema, or give a YAML file)")
    table.add_column("schema", style="bold")
    table.add_column("masks")
    table.add_column("classes")
    table.add_column("ignored")
    for schema in BUILTIN_SCHEMAS.values():
        kind = "codes" if schema.has_codes else "RGB colours"
        classes = ", ".join(
            f"[{color_hex(c.color)}]■[/] {c.name}" + (f" ={c.code}" if c.code is not None and schema.has_codes else "")
            for c in schema.classes
        )
        ignored = ", ".join([str(c) for c in schema.ignore_codes] + [color_hex(c) for c in schema.ignore_colors])
        table.add_row(schema.name, kind, classes, ignored or "-")
    Console().print(table)


@app.command()
@friendly_errors
def models():
    """List the ready models of the zoo: what they read, what they map, licence and source."""
    from landseg.zoo import list_zoo_models

    table = Table(title="Ready models (landseg predict --model NAME IMAGE; docs/ZOO.md)", show_lines=True)
    for column in ("model", "reads", "resolution", "classes", "licence", "source", "size"):
        table.add_column(column, style="bold" if column == "model" else None, overflow="fold")
    for entry in list_zoo_models():
        classes = "\n".join(f"[{c.color}]■[/] {c.code} {c.name}" for c in entry.classes)
        size = f"{entry.size_bytes / 1e6:.1f} MB" if entry.size_bytes is not None else "not installed"
        table.add_row(
            entry.name,
            f"{entry.sensor}\nbands {', '.join(entry.band_names)}",
            f"{entry.resolution_m:g} m",
            classes,
            entry.licence,
            entry.source,
            size,
        )
    Console().print(table)


@app.command()
@friendly_errors
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML file.")],
    out: Annotated[Path, typer.Option("--out", help="Run folder for checkpoints and logs.")] = Path("runs/latest"),
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a config value: dotted.key=value.")] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Stop training after this many minutes.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from OUT/checkpoints/last.ckpt.")] = False,
):
    """Train a model; writes OUT/checkpoints/{best,last}.ckpt, history.csv and TensorBoard logs."""
    from landseg.config import load_config
    from landseg.report import plot_training_curves
    from landseg.train.run import train as run_training

    experiment = load_config(config, set_ or [])
    result = run_training(experiment, out, resume=resume, max_minutes=max_minutes)
    if result.history.exists():
        plot_training_curves(result.history, out / "training_curves.png")
    console.print(
        f"[green]trained[/] {result.epochs} epochs in {result.minutes:.1f} min; {result.validation_text()}\n"
        f"  best: {result.best_checkpoint}\n  last: {result.last_checkpoint}"
    )


@app.command()
@friendly_errors
def demo(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo data, run and report.")] = Path(
        "landseg-demo"
    ),
    minutes: Annotated[float, typer.Option(help="Training time budget in minutes.")] = 4.0,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic scenes and the training.")] = 0,
):
    """Generate a synthetic georeferenced scene set, train, evaluate, predict and write a report."""
    from landseg.demo import run_demo

    report = run_demo(out, minutes=minutes, seed=seed)
    console.print(f"[bold green]demo report:[/] {report}")


from landseg.cli.audit import audit_command  # noqa: E402 - heavy imports inside
from landseg.cli.change import change_command  # noqa: E402 - heavy imports inside
from landseg.cli.checkpoints import convert_checkpoint_command  # noqa: E402 - heavy imports inside
from landseg.cli.evaluate import evaluate_command  # noqa: E402 - heavy imports inside
from landseg.cli.predict import export_command, predict_command  # noqa: E402 - heavy imports inside
from landseg.cli.prepare import prepare_app  # noqa: E402 - imports only typer
from landseg.cli.sweep import sweep_command  # noqa: E402 - heavy imports inside
from landseg.serve.command import serve as _serve  # noqa: E402 - imports only typer

app.command(name="evaluate")(friendly_errors(evaluate_command))
app.command(name="audit")(friendly_errors(audit_command))
app.command(name="predict")(friendly_errors(predict_command))
app.command(name="export")(friendly_errors(export_command))
app.add_typer(prepare_app, name="prepare")
app.command(name="serve")(friendly_errors(_serve))
app.command(name="convert-checkpoint")(friendly_errors(convert_checkpoint_command))
app.command(name="sweep")(friendly_errors(sweep_command))
app.command(name="change")(friendly_errors(change_command))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
