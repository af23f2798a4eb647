"""What a sweep leaves in DIR: ``trials.csv``, ``best_config.yaml``, plots and ``report.html``.

``best_config.yaml`` is the base config with the best trial's values, complete and with absolute paths,
so ``landseg train DIR/best_config.yaml --out RUN`` trains it as it is. The plots are Optuna's matplotlib
ones: optimization history, parameter importances (from two completed trials on; skipped with a note
where Optuna cannot compute them), parallel coordinates and the objective against each parameter.
"""

from __future__ import annotations

import csv
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from landseg.config import parse_config
from landseg.io.write import atomic_output
from landseg.report import write_report
from landseg.sweep.objective import CONFIG_FIRST_ATTR, SURPLUS_ATTR, SweepPlan
from landseg.sweep.space import SearchSpace, apply_values

TRIALS_CSV = "trials.csv"
BEST_CONFIG = "best_config.yaml"


@dataclass
class SweepOutputs:
    trials_csv: Path
    report: Path
    best_config: Path | None = None
    best_value: float | None = None
    best_trial: int | None = None
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def sweep_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials without the ones dropped unrun because another worker was first."""
    return [t for t in study.get_trials(deepcopy=False) if not t.user_attrs.get(SURPLUS_ATTR)]


def _cell(value) -> str | float | int:
    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the dead trial this one runs again, or None."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)


def trials_rows(trials: list[FrozenTrial], space: SearchSpace) -> tuple[list[str], list[list]]:
    keys = [p.key for p in space.parameters]
    header = ["trial", "state", "miou", *keys, "run_mious", "pruned_at_epoch", "retry_of", "minutes", "folders", "note"]
    rows = []
    for t in trials:
        minutes = round(t.duration.total_seconds() / 60, 3) if t.duration is not None else None
        note = (
            t.user_attrs.get("error")
            or ("killed with its process" if t.user_attrs.get("killed") else None)
            or ("interrupted" if t.user_attrs.get("interrupted") else None)
            or ("the config's own values" if t.user_attrs.get(CONFIG_FIRST_ATTR) else None)
        )
        rows.append(
            [
                t.number,
                t.state.name,
                t.value,
                *[t.params.get(k) for k in keys],
                t.user_attrs.get("run_mious"),
                t.user_attrs.get("pruned_at_epoch"),
                retry_of(t),
                minutes,
                t.user_attrs.get("runs"),
                note,
            ]
        )
    return header, [[_cell(v) for v in row] for row in rows]


def write_trials_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_best_config(path: Path, base: dict, space: SearchSpace, best: FrozenTrial, plan: SweepPlan) -> Path:
    config = parse_config(apply_values(base, space.values_of(best.params)))
    header = (
        f"# Best configuration of landseg sweep {plan.study_name!r}: trial {best.number}, mean best validation "
        f"mIoU {best.value:.4f} over {plan.repeats} run(s)\n# base config {plan.config}; searched: "
        + ", ".join(f"{k}={v}" for k, v in best.params.items())
        + "\n# Train it: landseg train THIS_FILE --out RUN\n"
    )
    with atomic_output(path) as temporary:
        temporary.write_text(header + yaml.safe_dump(config.to_yaml_dict(), sort_keys=False))
    return path


def _plots(
    study: optuna.Study, out: Path, space: SearchSpace, completed: int
) -> tuple[list[tuple[str, Path]], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import SubFigure
    from optuna.visualization import matplotlib as vis

    from landseg.io.figures import save_figure

    wanted = [
        (
            "optimization history: each trial's mean validation mIoU and the best so far",
            "optimization_history.png",
            lambda: vis.plot_optimization_history(study, target_name="validation mIoU"),
        ),
        (
            "parameter importances (fANOVA) for the validation mIoU",
            "param_importances.png",
            lambda: vis.plot_param_importances(study, target_name="validation mIoU"),
        ),
        (
            "parallel coordinates: every completed trial's values and score",
            "parallel_coordinate.png",
            lambda: vis.plot_parallel_coordinate(study, target_name="validation mIoU"),
        ),
        (
            "validation mIoU against each parameter",
            "slice.png",
            lambda: vis.plot_slice(study, target_name="validation mIoU"),
        ),
    ]
    images, notes = [], []
    for caption, name, draw in wanted:
        if completed < 1 or (name == "param_importances.png" and completed < 2):
            notes.append(
                f"{name}: not drawn, it needs {'two' if 'importances' in name else 'one'} completed "
                f"trial(s), the study has {completed}"
            )
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                drawn = draw()
        except Exception as exc:  # Optuna refuses e.g. importances when every trial has the same value
            notes.append(f"{name}: not drawn ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})")
            plt.close("all")
            continue
        axes = drawn.ravel()[0] if hasattr(drawn, "ravel") else drawn
        figure = axes.figure
        if isinstance(figure, SubFigure):  # the figure to save is the one that holds it
            figure = figure.figure
        if name == "slice.png":
            figure.set_size_inches(max(4.5 * len(space.parameters), 6), 4.5)
        images.append((caption, save_figure(figure, out / name)))
        plt.close("all")
    return images, notes


def _score(trial: FrozenTrial) -> float:
    """The trial's validation mIoU; a trial without one ranks last."""
    return trial.value if trial.value is not None else -math.inf


def write_outputs(study: optuna.Study, plan: SweepPlan, base: dict, space: SearchSpace) -> SweepOutputs:
    """Every output of the sweep from what the study holds now (rerun after more trials, they update)."""
    out = plan.out_dir
    out.mkdir(parents=True, exist_ok=True)
    trials = sweep_trials(study)
    header, rows = trials_rows(trials, space)
    outputs = SweepOutputs(trials_csv=write_trials_csv(out / TRIALS_CSV, header, rows), report=out / "report.html")
    for state in TrialState:
        outputs.counts[state.name.lower()] = sum(1 for t in trials if t.state == state)
    completed = [t for t in trials if t.state == TrialState.COMPLETE]
    best = max(completed, key=_score) if completed else None
    sections: dict[str, str] = {}
    if best is not None:
        outputs.best_config = write_best_config(out / BEST_CONFIG, base, space, best, plan)
        outputs.best_value, outputs.best_trial = best.value, best.number
        sections["Best configuration"] = (
            f"trial {best.number}: mean best validation mIoU {best.value:.4f} "
            f"(runs: {', '.join(f'{v:.4f}' for v in best.user_attrs.get('run_mious', []))})\n"
            + "\n".join(f"{k}: {v}" for k, v in best.params.items())
            + f"\n\nwritten to {outputs.best_config}"
        )
    else:
        outputs.notes.append("no trial completed: no best configuration yet")
    images, notes = _plots(study, out, space, len(completed))
    outputs.plots = [path for _, path in images]
    outputs.notes += notes
    sections["Search space"] = "\n".join(p.describe() for p in space.parameters)
    counts = ", ".join(f"{n} {s}" for s, n in outputs.counts.items() if n)
    sections["Study"] = (
        f"{plan.study_name}: {counts or 'no trials'}; storage {plan.storage or 'sqlite in the sweep folder'}; "
        f"{plan.repeats} run(s) per configuration; {f'{plan.minutes_per_trial:g} minutes per run' if plan.minutes_per_trial else 'no time limit per run'}; "
        f"sampler {plan.sampler}; pruning {'on (median, per validation)' if plan.pruning else 'off'}"
    )
    table = io.StringIO()
    csv.writer(table, delimiter="\t").writerows(
        [header[: 3 + len(space.parameters) + 2]] + [row[: 3 + len(space.parameters) + 2] for row in rows]
    )
    sections["Trials"] = table.getvalue()
    if outputs.notes:
        sections["Notes"] = "\n".join(outputs.notes)
    outputs.report = write_report(out, f"landseg sweep {plan.study_name}", images=images, sections=sections)
    return outputs
