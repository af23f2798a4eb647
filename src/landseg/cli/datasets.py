"""``landseg datasets``: the built-in class schemas as a table."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def datasets_command():
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
