"""A picture of a demo run: throughput and latency over time, handoffs marked.

Drawn as SVG by hand so that the demo needs no plotting library: two panels sharing
the time axis, requests per second above and latency (p50, p99 and max per time bin,
on a logarithmic scale) below, with every handoff's window shaded and labelled. An
``.html`` file wraps the picture with the run's summary; any other name gets the
bare SVG.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from statemigrate.demo._latency import Sample, summarize

__all__ = ["Window", "render_svg", "write_plot"]

WIDTH, PANEL, GAP, LEFT, RIGHT, TOP = 960, 200, 50, 70, 20, 30
BIN = 0.1
"""Seconds per time bin."""


@dataclass(frozen=True)
class Window:
    """A span of the run to shade, such as one handoff, in ``time.time()`` seconds."""

    start: float
    end: float
    label: str


def _bins(samples: Sequence[Sample], origin: float, count: int) -> list[list[float]]:
    bins: list[list[float]] = [[] for _ in range(count)]
    for start, seconds in samples:
        index = int((start - origin) / BIN)
        if 0 <= index < count:
            bins[index].append(seconds)
    return bins


def _polyline(points: Sequence[tuple[float, float]], colour: str, width: float = 1.5) -> str:
    if not points:
        return ""
    text = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" points="{text}"/>'


def render_svg(samples: Sequence[Sample], windows: Sequence[Window], *, title: str) -> str:
    """The picture as an SVG document."""
    if not samples:
        raise ValueError("no requests were answered: nothing to draw")
    origin = min(start for start, _ in samples)
    end = max(max(start for start, _ in samples), *(w.end for w in windows), origin + BIN)
    count = max(1, math.ceil((end - origin) / BIN))
    span = count * BIN
    plot_width = WIDTH - LEFT - RIGHT
    height = TOP + 2 * PANEL + GAP + 40

    def x(at: float) -> float:
        return LEFT + (at - origin) / span * plot_width

    bins = _bins(samples, origin, count)
    rates = [len(b) / BIN for b in bins]
    peak_rate = max(max(rates), 1.0)
    rate_top, lat_top = TOP, TOP + PANEL + GAP

    def rate_y(rate: float) -> float:
        return rate_top + PANEL - rate / peak_rate * PANEL

    durations = [s for _, s in samples if s > 0]
    low = math.floor(math.log10(max(min(durations, default=1e-4), 1e-5)))
    high = math.ceil(math.log10(max(max(durations, default=1e-3), 1e-4)))
    high = max(high, low + 1)

    def lat_y(seconds: float) -> float:
        clamped = min(max(seconds, 10.0**low), 10.0**high)
        return lat_top + PANEL - (math.log10(clamped) - low) / (high - low) * PANEL

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="14">{html.escape(title)}</text>',
    ]
    for window in windows:  # shaded first, so the lines stay on top
        left, right = x(window.start), max(x(window.end), x(window.start) + 1.5)
        for top in (rate_top, lat_top):
            parts.append(
                f'<rect x="{left:.1f}" y="{top}" width="{right - left:.1f}" height="{PANEL}"'
                ' fill="#f4a261" fill-opacity="0.35"/>'
            )
        parts.append(
            f'<text x="{left:.1f}" y="{rate_top + 12}" fill="#9c4a1a">'
            f"{html.escape(window.label)}</text>"
        )
    for top, label in ((rate_top, "requests / s"), (lat_top, "latency per 100 ms bin")):
        parts.append(
            f'<rect x="{LEFT}" y="{top}" width="{plot_width}" height="{PANEL}"'
            ' fill="none" stroke="#888"/>'
        )
        parts.append(
            f'<text x="12" y="{top + PANEL / 2}" transform="rotate(-90 12 {top + PANEL / 2})"'
            f' text-anchor="middle">{label}</text>'
        )
    for fraction in (0.0, 0.5, 1.0):
        rate = peak_rate * fraction
        parts.append(
            f'<text x="{LEFT - 6}" y="{rate_y(rate) + 4:.1f}" text-anchor="end">{rate:,.0f}</text>'
        )
    for power in range(low, high + 1):
        label = f"{10.0**power * 1000:g} ms"
        y = lat_y(10.0**power)
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_width}" y1="{y:.1f}" y2="{y:.1f}"'
            ' stroke="#ddd"/>'
        )
    step = max(1, math.ceil(span / 10))
    for second in range(0, int(span) + 1, step):
        at = x(origin + second)
        parts.append(
            f'<text x="{at:.1f}" y="{lat_top + PANEL + 16}" text-anchor="middle">{second} s</text>'
        )
    centre = [origin + (i + 0.5) * BIN for i in range(count)]
    throughput = [(x(c), rate_y(r)) for c, r in zip(centre, rates, strict=True)]
    parts.append(_polyline(throughput, "#264653"))
    # max, p99 and p50 of each bin; a fraction of 1.0 picks the largest.
    for fraction, colour in ((1.0, "#e63946"), (0.99, "#f4a261"), (0.5, "#2a9d8f")):
        points = []
        for c, values in zip(centre, bins, strict=True):
            if values:
                ordered = sorted(values)
                value = ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
                points.append((x(c), lat_y(value)))
        parts.append(_polyline(points, colour, 1.2))
    legend = (("max", "#e63946"), ("p99", "#f4a261"), ("p50", "#2a9d8f"))
    for i, (name, colour) in enumerate(legend):
        lx = LEFT + plot_width - 160 + i * 55
        parts.append(
            f'<line x1="{lx}" x2="{lx + 16}" y1="{lat_top - 8}" y2="{lat_top - 8}"'
            f' stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<text x="{lx + 20}" y="{lat_top - 4}">{name}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def write_plot(
    path: Path,
    samples: Sequence[Sample],
    windows: Sequence[Window],
    *,
    title: str,
    summary: str = "",
) -> None:
    """Write the picture to ``path``: an HTML page for ``.html``/``.htm``, else SVG."""
    svg = render_svg(samples, windows, title=title)
    if path.suffix.lower() in {".html", ".htm"}:
        rows = "".join(
            f"<tr><td>{html.escape(w.label)}</td><td>{summarize(samples, w.start, w.end).render()}"
            "</td></tr>"
            for w in windows
        )
        text = (
            "<!doctype html><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><body style='font-family:sans-serif'>"
            f"{svg}<h3>Latency during each handoff</h3><table>{rows}</table>"
            f"<pre>{html.escape(summary)}</pre></body>"
        )
    else:
        text = svg
    path.write_text(text, encoding="utf-8")
