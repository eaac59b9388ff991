"""The run report: one HTML page per run that on-call can open from the task's link.

It shows counts, the config's digest (never the config's keys), each gate's result
with the expectations that failed, and thumbnails of sampled *destination* images
with the areas the de-identification painted outlined in red. Painted areas are found
in the destination image alone (solid rectangles of one value, the redaction's fill),
so no source pixel is ever fetched for the report, and it carries no PHI.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

THUMB = 256


def painted_boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Solid rectangles of the image's darkest value that are not the background:
    what redaction leaves (a fill over a textured image), found without the source."""
    import cv2

    grey = image if image.ndim == 2 else image.max(axis=2)
    solid = (grey == grey.min()).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(solid, connectivity=4)
    total = grey.size
    return [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h, area in stats[1:count]
            if area == w * h and w >= 4 and h >= 4 and area < total // 4]


def thumbnail(destination_png: bytes) -> str:
    """A data: URI of a destination frame with its painted areas outlined."""
    dest = Image.open(io.BytesIO(destination_png)).convert("RGB")
    boxes = painted_boxes(np.asarray(dest))
    scale = THUMB / max(dest.size)
    small = dest.resize((max(1, round(dest.width * scale)), max(1, round(dest.height * scale))))
    draw = ImageDraw.Draw(small)
    for left, top, right, bottom in boxes:
        draw.rectangle([left * scale, top * scale, right * scale, bottom * scale],
                       outline=(255, 0, 0), width=2)
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _table(rows: dict[str, Any]) -> str:
    cells = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                    for k, v in rows.items())
    return f"<table>{cells}</table>"


def _files(folder: Path) -> str:
    """Links to the verification table and the gates' results of this run."""
    names = [n for n in ("verification.csv", "deidentified.json", "counts.json",
                         "export.json") if (folder / n).exists()]
    if not names:
        return ""
    items = "".join(f"<li><a href='{n}'>{n}</a></li>" for n in names)
    return f"<h2>Files</h2><ul>{items}</ul>"


def write_report(path: Path, *, title: str, counts: dict[str, Any],
                 gates: list[dict[str, Any]], thumbnails: list[tuple[str, str]]) -> Path:
    """Write the page: counts, gates (with failed expectations), thumbnails, and links to
    the tables beside it (relative, so they work served by the API server and on disk)."""
    gate_rows = "".join(
        f"<tr><td>{html.escape(g['name'])}</td>"
        f"<td class={'ok' if g['success'] else 'fail'}>{'passed' if g['success'] else 'FAILED'}"
        f"</td><td>{html.escape(', '.join(g.get('failed', [])) or '-')}</td></tr>"
        for g in gates)
    thumbs = "".join(f"<figure><img src='{uri}'><figcaption>{html.escape(caption)}"
                     f"</figcaption></figure>" for caption, uri in thumbnails)
    page = f"""<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.ok{{color:#070}}
.fail{{color:#b00;font-weight:bold}}figure{{display:inline-block;margin:8px}}</style>
<h1>{html.escape(title)}</h1><h2>Counts</h2>{_table(counts)}
<h2>Quality gates</h2><table><tr><th>gate</th><th>result</th><th>failed expectations</th></tr>
{gate_rows}</table><h2>Sampled destination images</h2>
<p>Red outlines: areas the de-identification painted (burned-in text).</p>{thumbs}
{_files(path.parent)}"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page)
    return path
