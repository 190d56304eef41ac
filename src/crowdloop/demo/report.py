"""The demo's HTML report: the per-round table and three plots, inline SVG drawn here (no scripts,
nothing loaded from another site)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crowdloop.demo.loop import DemoResult
    from crowdloop.demo.rounds import RoundMetrics

WIDTH, HEIGHT, MARGIN = 560, 300, 66
LEGEND_ROW = 16
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f")
Series = dict[str, list[tuple[float, float]]]
BINS = 10


def _scale(values: Sequence[float], low: float, high: float) -> tuple[float, float]:
    """A range around ``values`` (within ``low``..``high``) that starts and ends on a round tick."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    pad = (hi - lo) * 0.1 or 0.05
    lo, hi = max(low, lo - pad), min(high, hi + pad)
    step = _step(lo, hi)
    return max(low, math.floor(round(lo / step, 6)) * step), min(high, math.ceil(round(hi / step, 6)) * step)


def _step(lo: float, hi: float, ticks: int = 6) -> float:
    """A round tick spacing (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` ticks."""
    raw = (hi - lo) / max(ticks - 1, 1) or 1.0
    power = 10 ** math.floor(math.log10(raw))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw))


def _ticks(lo: float, hi: float) -> list[float]:
    step = _step(lo, hi)
    first = math.ceil(round(lo / step, 6))  # rounded: 0.7 / 0.1 is 7.000000000000001
    last = math.floor(round(hi / step, 6))
    return [k * step for k in range(first, last + 1)]


def _axes(
    title: str, xlabel: str, ylabel: str, x: tuple[float, float] | None, y: tuple[float, float], unit: str = ""
) -> list[str]:
    """Title, axes, axis titles, round ticks (none on x when ``x`` is None) and grid lines."""
    right, bottom = WIDTH - 20, HEIGHT - MARGIN
    parts = [f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" class="title">{html.escape(title)}</text>',
             f'<line x1="{MARGIN}" y1="{bottom}" x2="{right}" y2="{bottom}" class="axis"/>',
             f'<line x1="{MARGIN}" y1="30" x2="{MARGIN}" y2="{bottom}" class="axis"/>',
             f'<text x="{WIDTH / 2}" y="{bottom + 34}" text-anchor="middle">{html.escape(xlabel)}</text>',
             f'<text x="14" y="{HEIGHT / 2}" transform="rotate(-90 14 {HEIGHT / 2})" text-anchor="middle">'
             f"{html.escape(ylabel)}</text>"]  # fmt: skip
    if x is not None:
        for xv in _ticks(*x):
            parts.append(f'<text x="{_px(xv, x):.1f}" y="{bottom + 16}" text-anchor="middle">{_tick(xv)}</text>')
    for yv in _ticks(*y):
        py = _py(yv, y)
        parts.append(f'<text x="{MARGIN - 6}" y="{py + 4:.1f}" text-anchor="end">{unit}{_tick(yv)}</text>')
        parts.append(f'<line x1="{MARGIN}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" class="grid"/>')
    return parts


def _tick(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def _px(value: float, x: tuple[float, float]) -> float:
    return MARGIN + (value - x[0]) / ((x[1] - x[0]) or 1.0) * (WIDTH - 20 - MARGIN)


def _py(value: float, y: tuple[float, float]) -> float:
    return HEIGHT - MARGIN - (value - y[0]) / ((y[1] - y[0]) or 1.0) * (HEIGHT - MARGIN - 30)


def line_chart(
    title: str, xlabel: str, ylabel: str, series: Series, y_range: tuple[float, float] = (0, 1),
    x_range: tuple[float, float] | None = None,
) -> str:  # fmt: skip
    """An SVG line chart with points and a legend; NaN points are left out."""
    points = [p for line in series.values() for p in line if math.isfinite(p[1])]
    xs = [p[0] for p in points]
    x = x_range or _scale(xs, 0.0 if xs and min(xs) >= 0 else -math.inf, math.inf)  # no negative counts
    y = _scale([p[1] for p in points], *y_range)
    parts = _axes(title, xlabel, ylabel, x, y)
    for k, (name, line) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        shown = [(_px(a, x), _py(b, y)) for a, b in line if math.isfinite(b)]
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in shown)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3.5" fill="{colour}"/>' for a, b in shown]
        row = HEIGHT + 4 + LEGEND_ROW * k  # the legend goes under the chart, clear of the lines
        legend = f'<text x="{MARGIN + 30}" y="{row + 4}" style="fill: {colour}">{html.escape(name)}</text>'
        swatch = f'<line x1="{MARGIN + 8}" y1="{row}" x2="{MARGIN + 24}" y2="{row}" stroke="{colour}"/>'
        parts += [swatch.replace("/>", ' stroke-width="3"/>'), legend]
    return _svg(parts, legend_rows=len(series))


def bar_chart(title: str, xlabel: str, ylabel: str, bars: list[tuple[str, float]], unit: str = "") -> str:
    """An SVG bar chart, one labelled bar per entry (``unit``, e.g. ``$``, before each number)."""
    y = _scale([0.0, max([v for _, v in bars] + [1e-9]) * 1.1], 0.0, math.inf)
    parts = _axes(title, xlabel, ylabel, None, y, unit)
    step = (WIDTH - 20 - MARGIN) / max(len(bars), 1)
    for k, (name, value) in enumerate(bars):
        left, ytop = MARGIN + k * step + step * 0.2, _py(value, y)
        parts.append(f'<rect x="{left:.1f}" y="{ytop:.1f}" width="{step * 0.6:.1f}" '
                     f'height="{HEIGHT - MARGIN - ytop:.1f}" fill="{COLOURS[0]}"/>')  # fmt: skip
        centre = left + step * 0.3
        label = f"{unit}{value:,.2f}" if unit == "$" else _tick(value)
        parts.append(f'<text x="{centre:.1f}" y="{ytop - 4:.1f}" text-anchor="middle">{label}</text>')
        parts.append(
            f'<text x="{centre:.1f}" y="{HEIGHT - MARGIN + 16}" text-anchor="middle">{html.escape(name)}</text>'
        )
    return _svg(parts)


def _svg(parts: list[str], legend_rows: int = 0) -> str:
    body = "\n".join(parts)
    height = HEIGHT + (LEGEND_ROW * legend_rows + 8 if legend_rows else 0)
    return f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}">{body}</svg>'


def confidence_histogram(confidences: Sequence[float], low: float = 0.5) -> list[tuple[float, float]]:
    """Share of predictions per confidence bin (bin centres from ``low`` to 1)."""
    width = (1.0 - low) / BINS
    counts = [0] * BINS
    for value in confidences:
        counts[min(max(int((value - low) / width), 0), BINS - 1)] += 1
    total = max(len(confidences), 1)
    return [(low + width * (k + 0.5), counts[k] / total) for k in range(BINS)]


def plots(rounds: list[RoundMetrics]) -> list[str]:
    """The three plots: accuracy against labels bought, the edge's confidence, cost."""
    accuracy = line_chart("Accuracy by labels bought", "labels bought (answers)", "accuracy", {
        "model (production) on the gold pairs": [(r.labels_bought, r.model_accuracy) for r in rounds],
        "crowd labels (aggregated) against the true labels": [(r.labels_bought, r.label_accuracy) for r in rounds],
        "edge on the round's unseen stream, against the true labels": [(r.labels_bought, r.edge_accuracy)
                                                                        for r in rounds],
    })  # fmt: skip
    confidence = line_chart("Edge confidence on the unseen stream", "confidence", "share of predictions",
                            {f"round {r.round} (v{r.model_version})": confidence_histogram(r.confidences)
                             for r in rounds}, x_range=(0.5, 1.0))  # fmt: skip
    cost = bar_chart("Money spent (cumulative)", "round", "spent", [(str(r.round), r.spent) for r in rounds], "$")
    return [accuracy, confidence, cost]


COLUMNS = ("round", "labels bought", "spent", "label accuracy", "model accuracy", "model", "edge alone",
           "fed back", "feedback labeled", "drift (PSI)", "seconds")  # fmt: skip


def table_row(r: RoundMetrics) -> list[str]:
    """One round as the table's cells (shared by the terminal and the HTML table)."""
    return [str(r.round), f"{r.labels_bought:,}", f"${r.spent:,.2f}", f"{r.label_accuracy:.3f}",
            f"{r.model_accuracy:.3f}", f"v{r.model_version}" + (" (new)" if r.promoted else ""),
            f"{r.edge_alone:.1%}", str(r.fed_back), f"{r.feedback_labeled}/{r.feedback_total}",
            _drift_cell(r), f"{r.seconds:.0f}"]  # fmt: skip


def _drift_cell(r: RoundMetrics) -> str:
    cell = f"{r.drift_psi:.3f}" + (" drift" if r.drifted else "")
    return cell if r.drift_source == "server" else f"{cell} ({r.drift_source})"


def write_report(result: DemoResult, path: Path) -> Path:
    """Write the report to ``path``; returns it."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in table_row(r)) + "</tr>"
                   for r in result.rounds)  # fmt: skip
    figures = "".join(f"<figure>{svg}</figure>" for svg in plots(result.rounds))
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    page = _PAGE.format(made=made, seconds=f"{result.seconds:.0f}", root=html.escape(str(result.root)), head=head,
                        rows=rows, figures=figures, drift=html.escape(result.drift_source),
                        crowd=html.escape(CROWDS.get(result.dataset, result.dataset)))  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


CROWDS = {"product": "product (Abt-Buy product matching)", "rte": "rte (PASCAL RTE-1 textual entailment)"}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crowdloop demo</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: 1em 0; }} th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
td {{ text-align: right; }} figure {{ display: inline-block; margin: 0.5em; }}
svg text {{ font-size: 11px; fill: #333; }} svg .title {{ font-size: 13px; font-weight: bold; }}
svg .axis {{ stroke: #333; }} svg .grid {{ stroke: #eee; }}
</style></head><body>
<h1>crowdloop demo</h1>
<p>The bundled {crowd} crowd (real recorded answers) replayed through
a real <code>crowdloop serve</code>: dynamic overlap, truth inference, training and tuning, promotion on gold,
ONNX on an edge runtime that sends what it is unsure about back to the crowd. Made {made} in {seconds} s;
files in <code>{root}</code>. Drift: {drift}.</p>
<table><tr>{head}</tr>{rows}</table>
<p>labels bought: answers bought so far; label accuracy: the aggregated labels against the true labels; model
accuracy: the production version on the project's gold items (never trained on); edge alone: the share of the
round's unseen items the edge answered without sending them back; fed back: items it sent back (unsure or
audit), labeled by the crowd first in the next round; drift: the server's check of the served version (PSI of
the edge's confidences and class mix against the version's predictions on the project's imported items, out of
fold on those it trained on; "drift" when PSI, KS or the two-sample χ² of the class mix alarms), or, marked
"local", the same statistics against the model's confidences on the gold items where the server could not
check.</p>
{figures}
</body></html>
"""
