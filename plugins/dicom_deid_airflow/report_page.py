"""The run report's HTML: one page per run, on-call's front page.

The content is gathered by ``run_report``; this module only lays it out. The status
banner comes first (what happened, which task failed, its PHI-free error and a link to
its log), then what the run was asked and what it touched, then the evidence: task
durations, counts, the cost estimate, the gates, the review decision and the sampled
before/after pairs. Everything is escaped; the images are data: URIs built by
``review``, so the page stands alone (on disk, or served by the API server).
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Files beside the report that the page links (relative, so the served page reaches them).
LINKED_FILES = ("verification.csv", "deidentified.json", "counts.json", "export.json",
                "estimate.json")
_COLOURS = {"succeeded": "#e6f4ea", "failed": "#fce8e6", "running": "#fef7e0",
            "dry-run": "#e8f0fe"}


@dataclass
class Banner:
    """The run's status in one line, why, and the failed tasks (``task``, ``class``,
    ``message``, ``log``)."""

    status: str
    headline: str
    detail: str = ""
    failures: list[dict[str, str]] = field(default_factory=list)


@dataclass
class Sections:
    """What the page shows; each section filled independently."""

    banner: Banner
    params: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = field(default_factory=list)
    review: dict[str, Any] | None = None
    handoff: str = ""
    pairs: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: One row per operation the run started: task, operation name, audit log URL.
    audit: list[dict[str, str]] = field(default_factory=list)



def _e(value: Any) -> str:
    return html.escape(str(value))


def _table(rows: dict[str, Any]) -> str:
    if not rows:
        return "<p>-</p>"
    cells = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_plain(v))}</td></tr>"
                    for k, v in rows.items())
    return f"<table>{cells}</table>"


def _plain(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _banner(banner: Banner) -> str:
    failures = "".join(
        f"<li><b>{_e(f['task'])}</b>: {_e(f['class'])}: {_e(f['message'])} "
        f"(<a href='{_e(f['log'])}'>task log</a>)</li>" for f in banner.failures)
    return (f"<section class='banner {_e(banner.status)}' id='status' "
            f"style='background:{_COLOURS.get(banner.status, '#eee')}'>"
            f"<h2>{_e(banner.headline)}</h2><p>{_e(banner.detail)}</p>"
            f"{f'<ul>{failures}</ul>' if failures else ''}</section>")


def _audit(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "<p>No operation was started.</p>"
    body = "".join(f"<tr><td>{_e(r['task'])}</td><td>{_e(r['operation'])}</td>"
                   f"<td><a href='{_e(r['url'])}'>audit log entries</a></td></tr>"
                   for r in rows)
    return f"<table><tr><th>task</th><th>operation</th><th></th></tr>{body}</table>"


def _tasks(rows: list[dict[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(r['task'])}</td><td class='{_e(r['state'])}'>{_e(r['state'])}</td>"
        f"<td>{_e(r['duration_s'] if r['duration_s'] is not None else '-')}</td>"
        f"<td>{_e(r['tries'] or '-')}</td></tr>" for r in rows)
    return ("<table><tr><th>task</th><th>state</th><th>seconds</th><th>tries</th></tr>"
            f"{body}</table>")


def _estimate(estimate: dict[str, Any] | None) -> str:
    if not estimate:
        return "<p>Not estimated: the run did not get past routing.</p>"
    sizes = estimate.get("routes") or {}
    cost = estimate.get("estimate") or {}
    size_rows = "".join(
        f"<tr><td>{_e(name)}</td><td>{_e(s.get('series'))}</td><td>{_e(s.get('instances'))}"
        f"</td><td>{_e(round(int(s.get('bytes') or 0) / 2**20, 1))}</td>"
        f"<td>{_e(_plain(s.get('modalities') or {}))}</td></tr>" for name, s in sizes.items())
    lines = []
    for route, detail in (cost.get("routes") or {}).items():
        for line in detail.get("lines") or []:
            lines.append(f"<tr><td>{_e(route)}</td><td>{_e(line.get('item'))}</td>"
                         f"<td>{_e(line.get('quantity'))} {_e(line.get('unit'))}</td>"
                         f"<td>{_e(line.get('unit_price_usd'))}</td>"
                         f"<td>{_e(round(float(line.get('cost_usd') or 0), 4))}</td></tr>")
    return ("<table><tr><th>route</th><th>series</th><th>instances</th><th>MiB</th>"
            f"<th>modalities</th></tr>{size_rows}</table>"
            f"<p>{_e(cost.get('summary', ''))}</p>"
            "<table><tr><th>route</th><th>item</th><th>quantity</th><th>unit price (USD)"
            f"</th><th>cost (USD)</th></tr>{''.join(lines)}</table>"
            f"<p>Estimated total: <b>${_e(round(float(cost.get('total_usd') or 0), 2))}</b> "
            "(list prices from "
            "include/configs/pricing.yaml; check them before budgeting).</p>")


def _gates(gates: list[dict[str, Any]]) -> str:
    if not gates:
        return "<p>No gate ran.</p>"
    rows = "".join(
        f"<tr><td>{_e(g['name'])}</td><td class={'ok' if g['success'] else 'fail'}>"
        f"{'passed' if g['success'] else 'FAILED'}</td>"
        f"<td>{_e('; '.join(g.get('failed', [])) or '-')}</td></tr>" for g in gates)
    return ("<table><tr><th>gate</th><th>result</th><th>failed expectations</th></tr>"
            f"{rows}</table>")


def _review(review: dict[str, Any] | None) -> str:
    if not review:
        return "<p>The run did not reach the review step.</p>"
    if not review.get("required"):
        return "<p>Not required for this run (require_review was off).</p>"
    return (f"<p>Decision: <b>{_e(review.get('decision', '?'))}</b>"
            f"{' by ' + _e(review['reviewer']) if review.get('reviewer') else ''}"
            f"{' at ' + _e(review['responded_at']) if review.get('responded_at') else ''}"
            "</p>")


def _pairs(pairs: list[Any]) -> str:
    if not pairs:
        return "<p>No sampled pair to show.</p>"
    figures = []
    for pair in pairs:
        images = ""
        source = getattr(pair, "source_uri", None)
        if source:
            images += f"<img class=source alt='source' src='{source}'>"
        dest = getattr(pair, "dest_uri", None)
        if dest:
            images += f"<img class=destination alt='destination' src='{dest}'>"
        note = getattr(pair, "note", "") or ""
        figures.append(f"<figure>{images}<figcaption>{_e(getattr(pair, 'caption', ''))}"
                       f"{'<br><i>' + _e(note) + '</i>' if note else ''}</figcaption></figure>")
    return ("<p>Destination frames windowed with their own VOI; red outlines: exactly the "
            "pixels the de-identification changed.</p>" + "".join(figures))


def _files(folder: Path) -> str:
    names = [n for n in LINKED_FILES if (folder / n).exists()]
    if not names:
        return ""
    items = "".join(f"<li><a href='{n}'>{n}</a></li>" for n in names)
    return f"<h2>Files</h2><ul>{items}</ul>"


def write_report(path: Path, *, title: str, sections: Sections, written: str) -> Path:
    """Write the page and return its path."""
    notes = "".join(f"<li>{_e(n)}</li>" for n in sections.notes)
    page = f"""<!doctype html><meta charset=utf-8><title>{_e(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:80em}}table{{border-collapse:collapse;
margin-bottom:1em}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:top}}td.ok,td.success{{color:#070}}td.fail,td.failed,td.upstream_failed{{
color:#b00;font-weight:bold}}.banner{{padding:0.5em 1em;border-radius:6px}}
figure{{display:inline-block;margin:8px;vertical-align:top;max-width:540px}}
figure img{{margin-right:4px}}</style>
<h1>{_e(title)}</h1>{_banner(sections.banner)}
<p class=written>Written {_e(written)}.</p>
<h2>Resources</h2>{_table(sections.resources)}
<h2>Audit trail</h2>{_audit(sections.audit)}
<h2>Params as used</h2>{_table(sections.params)}
<h2>Tasks</h2>{_tasks(sections.tasks)}
<h2>Counts</h2>{_table(sections.counts)}
<h2>Routing and cost estimate</h2>{_estimate(sections.estimate)}
<h2>Quality gates</h2>{_gates(sections.gates)}
<h2>Human review</h2>{_review(sections.review)}
<h2>Handoff</h2><p>{_e(sections.handoff or '-')}</p>
<h2>Sampled before/after pairs</h2>{_pairs(sections.pairs)}
{f'<h2>Notes</h2><ul>{notes}</ul>' if notes else ''}
{_files(path.parent)}"""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page)
    tmp.replace(path)
    return path
