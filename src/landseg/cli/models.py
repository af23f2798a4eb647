"""``landseg models``: the ready models of the zoo as a table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def models_command():
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
