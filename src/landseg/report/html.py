"""One self-contained ``report.html``: summary scores, per-class table, figures and free-text sections.

Figures are embedded as base64 data URIs and the style sheet is inline, so the single file can be
mailed or attached to a ticket and still shows everything.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from html import escape
from pathlib import Path

from landseg.classes import ClassSchema, color_hex
from landseg.errors import DataError
from landseg.io.write import atomic_output
from landseg.report.tables import format_score, support_shares

PathLike = str | os.PathLike
REPORT_NAME = "report.html"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1100px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; }
.generated { color: #777; font-size: 0.85rem; margin-top: 0; }
.summary { display: flex; flex-wrap: wrap; gap: 1rem; margin: 1rem 0; }
.summary div { border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem 1rem; min-width: 9rem; }
.summary .value { font-size: 1.5rem; font-weight: 600; }
.summary .name { color: #666; font-size: 0.85rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { padding: 0.3rem 0.7rem; border-bottom: 1px solid #e4e4e4; }
th { text-align: left; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.absent td { color: #999; }
.swatch { display: inline-block; width: 0.9rem; height: 0.9rem; border: 1px solid #555; vertical-align: -0.1rem;
          margin-right: 0.4rem; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; margin-top: 0.3rem; }
pre { background: #f6f6f6; padding: 0.8rem; white-space: pre-wrap; font-size: 0.85rem; }
"""


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0]
    if mime is None or not mime.startswith("image/"):
        raise DataError("report figure is not an image file (png, jpg, svg, ...)", path)
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read report figure: {exc.strerror}", path) from None
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _summary_html(metrics: Mapping) -> str:
    cards = [
        ("mIoU", metrics["miou"]),
        ("mean F1", metrics["mean_f1"]),
        ("pixel accuracy", metrics["pixel_accuracy"]),
        ("frequency-weighted IoU", metrics["fw_iou"]),
    ]
    items = "".join(
        f'<div><div class="value">{format_score(value)}</div><div class="name">{escape(name)} (%)</div></div>'
        for name, value in cards
    )
    return f'<div class="summary">{items}</div>'


def _per_class_html(metrics: Mapping, schema: ClassSchema | None) -> str:
    colors = {} if schema is None else {c.name: color_hex(c.color) for c in schema.classes}
    shares = support_shares(metrics)
    header = "".join(
        f"<th>{h}</th>" for h in ("class", "IoU %", "F1 %", "precision %", "recall %", "pixels", "support %")
    )
    rows = []
    for name in metrics["class_names"]:
        scores = metrics["per_class"][name]
        swatch = f'<span class="swatch" style="background:{colors[name]}"></span>' if name in colors else ""
        cells = "".join(
            f'<td class="num">{format_score(scores[key])}</td>' for key in ("iou", "f1", "precision", "recall")
        )
        absent = ' class="absent"' if scores["support"] == 0 else ""
        rows.append(
            f"<tr{absent}><td>{swatch}{escape(name)}</td>{cells}"
            f'<td class="num">{scores["support"]:,}</td><td class="num">{format_score(shares[name])}</td></tr>'
        )
    return f"<table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _confusion_html(metrics: Mapping) -> str:
    names = metrics["class_names"]
    header = "<th>truth \\ prediction</th>" + "".join(f"<th>{escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{escape(name)}</th>" + "".join(f'<td class="num">{count:,}</td>' for count in row) + "</tr>"
        for name, row in zip(names, metrics["confusion_matrix"], strict=False)
    )
    return (
        "<details><summary>Confusion matrix (pixel counts)</summary>"
        f"<table><thead><tr>{header}</tr></thead><tbody>{rows}</tbody></table></details>"
    )


def render_report(
    title: str,
    metrics: Mapping | None = None,
    images: Sequence[tuple[str, PathLike]] = (),
    sections: Mapping[str, str] | None = None,
    schema: ClassSchema | None = None,
) -> str:
    """The report as an HTML string (see ``write_report``)."""
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="generated">generated by landseg, {generated}</p>',
    ]
    if metrics is not None:
        parts += ["<h2>Scores</h2>", _summary_html(metrics), _per_class_html(metrics, schema), _confusion_html(metrics)]
    if images:
        parts.append("<h2>Figures</h2>")
        for caption, image_path in images:
            parts.append(
                f'<figure><img src="{_data_uri(Path(image_path))}" alt="{escape(caption)}">'
                f"<figcaption>{escape(caption)}</figcaption></figure>"
            )
    for heading, text in (sections or {}).items():
        parts.append(f"<h2>{escape(heading)}</h2><pre>{escape(text)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    out_dir: PathLike,
    title: str,
    metrics: Mapping | None = None,
    images: Sequence[tuple[str, PathLike]] = (),
    sections: Mapping[str, str] | None = None,
    schema: ClassSchema | None = None,
) -> Path:
    """Write ``out_dir/report.html`` atomically and return its path.

    ``metrics`` is a ``landseg.metrics.metrics_dict`` (or ``None`` to leave scores out); ``images`` are
    (caption, path) pairs embedded in order; ``sections`` map a heading to plain text shown verbatim
    (configuration, notes); ``schema`` adds colour swatches to the per-class table.
    """
    document = render_report(title, metrics, images, sections, schema)
    target = Path(out_dir) / REPORT_NAME
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as temp:
        temp.write_text(document, encoding="utf-8")
    return target
