"""The ``landseg`` command line: the Typer app, and the registration of every command.

Each command lives in its own module of this package (``cli/<command>.py``): a thin function that
parses, calls the library and prints. Those modules import their library lazily, inside the command,
so that ``landseg --help`` loads neither torch nor FastAPI. Nothing in landseg imports this package.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from landseg.cli.assess import assess_command
from landseg.cli.audit import audit_command
from landseg.cli.calibrate import calibrate_command
from landseg.cli.change import change_command
from landseg.cli.checkpoints import convert_checkpoint_command
from landseg.cli.datasets import datasets_command
from landseg.cli.demo import demo_command
from landseg.cli.errors import friendly_errors, set_debug
from landseg.cli.evaluate import evaluate_command
from landseg.cli.export import export_command
from landseg.cli.models import models_command
from landseg.cli.predict import predict_command
from landseg.cli.prepare import prepare_app
from landseg.cli.sample import sample_command
from landseg.cli.serve import serve_command
from landseg.cli.suggest import suggest_command
from landseg.cli.sweep import sweep_command
from landseg.cli.train import train_command

app = typer.Typer(
    help="Land-cover maps from satellite and aerial imagery: train, evaluate, predict.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")] = False):
    set_debug(debug)


app.command(name="datasets")(friendly_errors(datasets_command))
app.command(name="models")(friendly_errors(models_command))
app.command(name="train")(friendly_errors(train_command))
app.command(name="demo")(friendly_errors(demo_command))
app.command(name="evaluate")(friendly_errors(evaluate_command))
app.command(name="calibrate")(friendly_errors(calibrate_command))
app.command(name="audit")(friendly_errors(audit_command))
app.command(name="predict")(friendly_errors(predict_command))
app.command(name="export")(friendly_errors(export_command))
app.add_typer(prepare_app, name="prepare")
app.command(name="serve")(friendly_errors(serve_command))
app.command(name="convert-checkpoint")(friendly_errors(convert_checkpoint_command))
app.command(name="sweep")(friendly_errors(sweep_command))
app.command(name="change")(friendly_errors(change_command))
app.command(name="sample")(friendly_errors(sample_command))
app.command(name="assess")(friendly_errors(assess_command))
app.command(name="suggest")(friendly_errors(suggest_command))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
