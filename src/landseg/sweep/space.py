"""The search space: config keys, in the config's own dotted form, with a range or a list of choices.

```yaml
train.optimizer.lr: {log_uniform: [1.0e-4, 3.0e-3]}
train.loss.name: {choice: [ce, focal]}
data.input_scale: {choice: [0.5, 1.0]}
train.augment.brightness: {uniform: [0.0, 0.3]}
train.batch_size: {int: [4, 16], step: 4}
train.loss: {choice: {ce: {name: ce}, focal: {name: focal, gamma: 2.0}}}   # named choices of whole sections
```

A key names a value or a whole section (a section value replaces the section, as ``--set`` does).
Every endpoint and every choice is checked against the config schema before any trial runs, so a typo
or a value the config refuses is one line naming the space file, not a failed trial an hour later.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from landseg.config import ExperimentConfig, get_dotted, parse_config, read_yaml_config, set_dotted
from landseg.errors import ConfigError

KINDS = ("uniform", "log_uniform", "int", "choice")
_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_PRIMITIVE = (str, int, float, bool, type(None))


@dataclass(frozen=True)
class Parameter:
    """One searched key: ``kind`` with ``low``/``high`` (and ``step`` for int), or labelled ``choices``."""

    key: str
    kind: str
    low: float | None = None
    high: float | None = None
    step: int | None = None
    choices: tuple[tuple[Any, Any], ...] = ()
    """(label, config value) pairs: the label is what Optuna stores, a primitive value is its own label."""

    @property
    def bounds(self) -> tuple[float, float]:
        """``low`` and ``high`` of a range (every kind but choice has both: ``parse_parameter`` sees to it)."""
        if self.low is None or self.high is None:
            raise ValueError(f"{self.key}: a {self.kind} parameter has no range")
        return self.low, self.high

    @property
    def int_bounds(self) -> tuple[int, int]:
        low, high = self.bounds
        return int(low), int(high)

    def suggest(self, trial) -> Any:
        """Ask an Optuna trial for this parameter; returns the value for the config."""
        if self.kind == "choice":
            return self.value_of(trial.suggest_categorical(self.key, [label for label, _ in self.choices]))
        if self.kind == "int":
            return trial.suggest_int(self.key, *self.int_bounds, step=self.step or 1)
        return trial.suggest_float(self.key, *self.bounds, log=self.kind == "log_uniform")

    def value_of(self, stored: Any) -> Any:
        """The config value of what Optuna stored for this parameter (a choice's label, or the number)."""
        if self.kind != "choice":
            return stored
        for label, value in self.choices:
            if label == stored and type(label) is type(stored):
                return copy.deepcopy(value)
        raise ConfigError(f"{self.key}: {stored!r} is not one of this space's choices")

    def candidates(self) -> list[tuple[str, Any]]:
        """(description, value) of each endpoint or choice: every one must make a valid config."""
        if self.kind == "choice":
            return [(f"choice {label!r}", value) for label, value in self.choices]
        if self.kind == "int":
            low, high = self.int_bounds
            return [(f"low {low}", low), (f"high {high}", high)]
        low_value, high_value = self.bounds
        return [(f"low {low_value:g}", low_value), (f"high {high_value:g}", high_value)]

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key}: choice of {', '.join(str(label) for label, _ in self.choices)}"
        step = f" step {self.step}" if self.step else ""
        low, high = self.bounds
        return f"{self.key}: {self.kind} [{low:g}, {high:g}]{step}"

    def to_dict(self) -> dict:
        """A plain record of the parameter (stored with the study to recognise the same space)."""
        if self.kind == "choice":
            return {"key": self.key, "kind": self.kind, "choices": [[label, value] for label, value in self.choices]}
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "step": self.step}


@dataclass(frozen=True)
class SearchSpace:
    parameters: tuple[Parameter, ...]
    source: str = ""

    def suggest(self, trial) -> dict[str, Any]:
        """Every parameter's config value for this trial, by dotted key."""
        return {p.key: p.suggest(trial) for p in self.parameters}

    def values_of(self, params: dict[str, Any]) -> dict[str, Any]:
        """Config values of a finished trial's stored params (labels of choices resolved)."""
        by_key = {p.key: p for p in self.parameters}
        return {key: by_key[key].value_of(stored) for key, stored in params.items() if key in by_key}

    def params_of_config(self, base: dict) -> dict[str, Any]:
        """What Optuna would store for a trial of the config ``base`` itself (``--config-first``): for a
        choice, the label of the choice that leaves ``base`` as it is; for a range, the config's number."""
        config = parse_config(base).to_yaml_dict()
        params: dict[str, Any] = {}
        for p in self.parameters:
            if p.kind == "choice":
                labels = [label for label, value in p.choices if _leaves_unchanged(base, p.key, value, config)]
                if not labels:
                    raise ConfigError(
                        f"{p.key}: the config's own value is none of the choices; add it to try the config first",
                        self.source,
                    )
                params[p.key] = labels[0]
                continue
            value = get_dotted(config, p.key)
            low, high = p.bounds
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise ConfigError(
                    f"{p.key}: the config's own value {value!r} is outside [{low:g}, {high:g}]; "
                    "widen the range to try the config first",
                    self.source,
                )
            params[p.key] = int(value) if p.kind == "int" else float(value)
        return params

    def fingerprint(self) -> str:
        return json.dumps([p.to_dict() for p in self.parameters], sort_keys=True, default=str)

    @property
    def is_grid(self) -> bool:
        """Every parameter is a choice or an integer range: the grid sampler can enumerate it."""
        return all(p.kind in ("choice", "int") for p in self.parameters)

    def grid(self) -> dict[str, list]:
        grid = {}
        for p in self.parameters:
            if p.kind == "choice":
                grid[p.key] = [label for label, _ in p.choices]
            elif p.kind == "int":
                low, high = p.int_bounds
                grid[p.key] = list(range(low, high + 1, p.step or 1))
            else:
                raise ConfigError(f"{p.key}: the grid sampler needs choices or int ranges, not {p.kind}", self.source)
        return grid


def apply_values(base: dict, values: dict[str, Any]) -> dict:
    """A copy of the config mapping ``base`` with each dotted key set to its value."""
    data = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(data, key, value)
    return data


def _leaves_unchanged(base: dict, key: str, value: Any, config: dict) -> bool:
    try:
        return parse_config(apply_values(base, {key: value})).to_yaml_dict() == config
    except ConfigError:
        return False


def _number(value: Any, key: str, source: Path) -> float:
    if isinstance(value, str) and _FLOAT.match(value.strip()):
        value = float(value)  # YAML 1.1 reads 1e-4 (no dot) as a string
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{key}: range endpoints must be finite numbers, got {value!r}", source)
    return value


def _choice_value(value: Any) -> Any:
    if isinstance(value, str) and _FLOAT.match(value.strip()) and any(c in value for c in "eE"):
        return float(value)  # 1e-9 in a YAML list is a string to PyYAML, a number to the reader
    return value


def parse_parameter(key: Any, spec: Any, source: Path) -> Parameter:
    """One entry of the space file, with one-line errors naming the key."""
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
        raise ConfigError(f"{key!r} is not a dotted config key like train.optimizer.lr", source)
    if not isinstance(spec, dict):
        raise ConfigError(
            f"{key}: give a range or choices, e.g. {{log_uniform: [1.0e-4, 3.0e-3]}} or "
            f"{{choice: [ce, focal]}}, got {spec!r}",
            source,
        )
    kinds = [k for k in spec if k in KINDS]
    unknown = [k for k in spec if k not in KINDS and k != "step"]
    if unknown:
        raise ConfigError(f"{key}: unknown entry {unknown[0]!r}; give one of {', '.join(KINDS)}", source)
    if len(kinds) != 1:
        raise ConfigError(f"{key}: give exactly one of {', '.join(KINDS)}", source)
    kind = kinds[0]
    body = spec[kind]
    if "step" in spec and kind != "int":
        raise ConfigError(f"{key}: step belongs to int ranges, not {kind}", source)
    if kind == "choice":
        if isinstance(body, dict):
            choices = tuple((str(label), value) for label, value in body.items())
        elif isinstance(body, list):
            choices = tuple(
                (_choice_value(v), _choice_value(v))
                if isinstance(v, _PRIMITIVE)
                else (json.dumps(v, sort_keys=True, separators=(",", ":")), v)
                for v in body
            )
        else:
            raise ConfigError(
                f"{key}: choice takes a list [a, b] or named choices {{name: value}}, got {body!r}", source
            )
        if not choices:
            raise ConfigError(f"{key}: choice needs at least one value", source)
        labels = [label for label, _ in choices]
        if len(set(map(repr, labels))) != len(labels):
            raise ConfigError(f"{key}: choices repeat a value ({labels})", source)
        return Parameter(key, kind, choices=choices)
    if not isinstance(body, list) or len(body) != 2:
        raise ConfigError(f"{key}: {kind} takes [low, high], got {body!r}", source)
    low, high = (_number(v, key, source) for v in body)
    if kind == "log_uniform" and low <= 0:
        raise ConfigError(f"{key}: log_uniform needs a low end above 0, got {low:g}", source)
    if kind == "int":
        step = spec.get("step", 1)
        if (
            any(isinstance(v, float) and not v.is_integer() for v in (low, high))
            or not isinstance(step, int)
            or isinstance(step, bool)
            or step < 1
        ):
            raise ConfigError(f"{key}: int takes whole numbers [low, high] and a step of at least 1", source)
        if low > high:
            raise ConfigError(f"{key}: int range [{int(low)}, {int(high)}] has low above high", source)
        return Parameter(key, kind, low=int(low), high=int(high), step=step if step != 1 else None)
    if low >= high:
        raise ConfigError(f"{key}: {kind} range [{low:g}, {high:g}] needs low below high", source)
    return Parameter(key, kind, low=float(low), high=float(high))


def _section_models(annotation: Any) -> list[type[BaseModel]]:
    """The config section classes inside a field's annotation: ``SWAConfig | None`` -> ``[SWAConfig]``, the
    loss union -> every loss config."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for argument in typing.get_args(annotation) for model in _section_models(argument)]


def _is_mapping(annotation: Any) -> bool:
    return (
        annotation is dict
        or typing.get_origin(annotation) is dict
        or any(_is_mapping(a) for a in typing.get_args(annotation))
    )


def check_key(key: str, source: Path) -> None:
    """``key`` names a config field (or lies inside a free mapping such as ``model.extra``); under the loss,
    a field of any loss (which loss takes it is checked with the values)."""
    sections: list[type[BaseModel]] = [ExperimentConfig]
    parts = key.split(".")
    for depth, part in enumerate(parts):
        fields: dict[str, FieldInfo] = {}
        for section in sections:
            fields |= {(f.alias or name): f for name, f in section.model_fields.items()} | dict(section.model_fields)
        where = ".".join(parts[:depth]) or "the config"
        if part not in fields:
            close = difflib.get_close_matches(part, list(fields), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(sorted(fields))}"
            raise ConfigError(f"{key}: {part!r} is not a key of {where}{hint}", source)
        annotation = fields[part].annotation
        if depth == len(parts) - 1 or _is_mapping(annotation):
            return
        sections = _section_models(annotation)
        if not sections:
            raise ConfigError(f"{key}: {'.'.join(parts[: depth + 1])} is a value, not a section", source)


def load_space(path: str | Path, base: dict) -> SearchSpace:
    """Read and check a space file against ``base``, the config mapping every trial starts from.

    Each endpoint and choice is put into ``base`` on its own and validated by the config schema.
    """
    path = Path(path)
    data = read_yaml_config(path, kind="search space")
    if not data:
        raise ConfigError("search space names no config key", path)
    parameters = tuple(parse_parameter(key, spec, path) for key, spec in data.items())
    for parameter in parameters:
        check_key(parameter.key, path)
    for parameter in parameters:
        for description, value in parameter.candidates():
            try:
                parse_config(apply_values(base, {parameter.key: value}))
            except ConfigError as exc:
                raise ConfigError(
                    f"{parameter.key}: {description} does not make a valid config ({exc.problem})", path
                ) from None
    return SearchSpace(parameters, str(path))
