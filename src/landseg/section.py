"""The strict pydantic base of every typed setting: experiment configs, losses, model specs.

It lives below the modules whose settings it types (``losses``, ``models``), so that each of them
declares its own settings beside the code that builds from them, and ``config`` assembles them.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from landseg.errors import ConfigError


def unknown_key_message(key: object, known: set[str]) -> str:
    """``unknown key 'x'; did you mean 'y'?`` (or the known keys when none is close)."""
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(sorted(known))}"
    return f"unknown key {key!r}{hint}"


class Section(BaseModel):
    """A settings block that refuses unknown keys with a did-you-mean hint."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def user_keys(cls) -> set[str]:
        """Keys as users write them: field names and their aliases (``schema`` for ``schema_``)."""
        return set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}

    @model_validator(mode="before")
    @classmethod
    def _check_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = cls.user_keys()
            for key in data:
                if key not in known:
                    raise ValueError(unknown_key_message(key, known))
        return data


def config_error(
    exc: ValidationError, source: str | Path | None = None, within: str = "", tags: Collection[str] = ()
) -> ConfigError:
    """pydantic's report as one line: the first problem's dotted key (under ``within``) and message, and how
    many more. ``tags``: discriminators of tagged unions, which pydantic puts into the key after the union's
    field (``train.loss.focal.gamma``) and users never write."""
    first = exc.errors()[0]
    loc = [within] if within else []
    loc += [str(part) for part in first["loc"] if part not in tags]
    where = ".".join(loc)
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return ConfigError(f"{where}: {message}{more}" if where else f"{message}{more}", source)
