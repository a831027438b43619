"""A small line chart as inline SVG: lag over the last hour, drawn on the server.

Pure: points in, SVG text out. No script and no style attribute (the console's Content
Security Policy allows neither inline), only presentation attributes and classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 240, 48
_PAD = 2


def lag_chart(
    points: Sequence[tuple[float, float]],
    start: float,
    end: float,
    label: str,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> str:
    """``points`` (time, value) between ``start`` and ``end`` as an SVG polyline.

    The y axis runs from 0 to the highest value (at least 1, so a flat zero line sits at the
    bottom); the highest value is written in the top left corner. ``label`` names the chart
    for screen readers (``role="img"`` with a ``<title>``).
    """
    span = max(end - start, 1e-9)
    top = max((v for _, v in points), default=0.0)
    scale = max(top, 1.0)
    inner_w, inner_h = width - 2 * _PAD, height - 2 * _PAD

    def xy(at: float, value: float) -> str:
        x = _PAD + inner_w * min(max((at - start) / span, 0.0), 1.0)
        y = _PAD + inner_h * (1 - value / scale)
        return f"{x:.1f},{y:.1f}"

    shown = [(at, v) for at, v in points if start <= at <= end]
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(label)}</title>",
        f'<line class="chart-base" x1="{_PAD}" y1="{height - _PAD}" x2="{width - _PAD}" '
        f'y2="{height - _PAD}"/>',
    ]
    if len(shown) == 1:
        x, y = xy(*shown[0]).split(",")
        parts.append(f'<circle class="chart-line" cx="{x}" cy="{y}" r="1.5"/>')
    elif shown:
        path = " ".join(xy(at, v) for at, v in shown)
        parts.append(f'<polyline class="chart-line" fill="none" points="{path}"/>')
    parts.append(f'<text class="chart-max" x="{_PAD + 2}" y="10">max {_short(top)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _short(value: float) -> str:
    """1234 -> 1.2k, 2500000 -> 2.5M: the axis label stays a few characters wide."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}"
