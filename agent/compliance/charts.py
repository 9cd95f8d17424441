"""Bar charts as inline SVG, drawn by hand: the annual report's plots without a plotting stack.

A dock is a small board; matplotlib and friends would cost more than everything else the report
needs. A bar chart is a few dozen rectangles and labels, so it is written out here. The output is
an ``<svg>`` element meant to be inlined in an HTML page (no ``xmlns``, no external references,
no script); every text is escaped. Fills are plain greys that survive black-and-white printing.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from html import escape

__all__ = ["bar_chart", "nice_scale"]

_WIDTH, _HEIGHT = 520, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 12, 30, 46
_FILL, _EMPHASIS = "#7a7a7a", "#1f1f1f"


def nice_scale(maximum: float, ticks: int = 4) -> tuple[int, int]:
    """``(top, step)``: an axis from 0 to ``top`` in whole ``step``s of 1, 2 or 5 x 10^k."""
    if maximum <= 0:
        return 1, 1
    raw = maximum / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next(f * magnitude for f in (1, 2, 5, 10) if f * magnitude >= raw)
    return math.ceil(maximum / step) * step, step


def bar_chart(labels: Sequence[str], values: Sequence[int], *, title: str, x_label: str,
              y_label: str, emphasis: Collection[int] = ()) -> str:
    """An SVG bar chart; bars whose index is in ``emphasis`` are drawn darker (e.g. late ones)."""
    if len(labels) != len(values) or not labels:
        raise ValueError("labels and values must be non-empty and of equal length")
    plot_w, plot_h = _WIDTH - _LEFT - _RIGHT, _HEIGHT - _TOP - _BOTTOM
    base = _TOP + plot_h
    top, step = nice_scale(max(values))
    out = [f'<svg class="chart" viewBox="0 0 {_WIDTH} {_HEIGHT}" width="{_WIDTH}" '
           f'height="{_HEIGHT}" font-family="DejaVu Sans, Arial, sans-serif" role="img" '
           f'aria-label="{escape(title)}">',
           f"<title>{escape(title)}</title>",
           f'<text x="{_WIDTH / 2:.1f}" y="16" text-anchor="middle" font-size="13" '
           f'font-weight="bold">{escape(title)}</text>']
    for tick in range(0, top + 1, step):
        y = base - tick / top * plot_h
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" '
                   f'stroke="#d0d0d0" stroke-width="0.6"/>')
        out.append(f'<text x="{_LEFT - 5}" y="{y + 3.5:.1f}" text-anchor="end" '
                   f'font-size="10">{tick}</text>')
    slot = plot_w / len(values)
    bar_w = slot * 0.7
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        x = _LEFT + i * slot + (slot - bar_w) / 2
        h = value / top * plot_h
        fill = _EMPHASIS if i in emphasis else _FILL
        out.append(f'<rect x="{x:.1f}" y="{base - h:.1f}" width="{bar_w:.1f}" height="{h:.1f}" '
                   f'fill="{fill}"><title>{escape(label)}: {value}</title></rect>')
        centre = x + bar_w / 2
        out.append(f'<text x="{centre:.1f}" y="{base - h - 3:.1f}" text-anchor="middle" '
                   f'font-size="10">{value}</text>')
        out.append(f'<text x="{centre:.1f}" y="{base + 13:.1f}" text-anchor="middle" '
                   f'font-size="10">{escape(label)}</text>')
    out.append(f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}" '
               f'stroke="#000" stroke-width="1"/>')
    out.append(f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_HEIGHT - 8}" text-anchor="middle" '
               f'font-size="11">{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{_TOP + plot_h / 2:.1f}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 14 {_TOP + plot_h / 2:.1f})">{escape(y_label)}</text>')
    out.append("</svg>")
    return "\n".join(out)
