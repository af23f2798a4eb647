"""How every command reports a user's mistake: one red line and exit code 1, never a traceback."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

from landseg.errors import LandsegError

console = Console(stderr=True)
_state = {"debug": False}


def set_debug(debug: bool) -> None:
    """``landseg --debug``: let errors through with their traceback."""
    _state["debug"] = debug


def friendly_errors(command):
    """User mistakes become one red line and exit code 1; ``--debug`` shows the traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LandsegError as exc:
            if _state["debug"]:
                raise
            console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:
            # The system refused a file operation (a folder under a regular file, no permission, no
            # space): the user's environment, not a bug, so one line naming the path.
            if _state["debug"]:
                raise
            console.print(f"[bold red]error:[/] {escape(os_error_message(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper


def os_error_message(exc: OSError) -> str:
    problem = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"{exc.filename}: {problem}" if exc.filename else problem
