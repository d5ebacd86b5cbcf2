"""The diff's charts as SVG: CKA per layer with its references, a layer-pair heatmap, and
lines over training. Numbers in, markup out; presentation attributes only (no script, no
style element), so the pages' Content-Security-Policy holds and equal numbers give equal bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from xml.sax.saxutils import escape

from ..drawing.charts import AXIS_COLOR, FONT, TEXT_COLOR, _n
from ..drawing.visuals import legend_stops

__all__ = ["CKA_COLOR", "FLOOR_COLOR", "NULL_COLOR", "cka_chart", "heatmap_chart", "lines_chart"]

CKA_COLOR = "#1f5fa8"
NULL_COLOR = "#888888"
FLOOR_COLOR = "#d9730d"
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


def _frame(width: int, height: int, body: list[str], label: str) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label, {chr(34): "&quot;"})}">'
    )
    return "\n".join([head, *body, "</svg>"]) + "\n"


def _y_axis(height: int, width: int, y: object) -> list[str]:
    """Draw a 0..1 axis with ticks at every 0.25."""
    out = []
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        ty = y(tick)  # type: ignore[operator]
        out.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{_n(ty)}" y2="{_n(ty)}" stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{LEFT - 6}" y="{_n(ty + 4)}" text-anchor="end" font-size="11" {FONT} '
            f'fill="{TEXT_COLOR}">{tick:g}</text>'
        )
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{height - BOTTOM}" stroke="{AXIS_COLOR}"/>'
    )
    return out


def cka_chart(
    values: Sequence[float | None],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    nulls: Sequence[float | None],
    floors: Sequence[float | None],
    width: int = 900,
    height: int = 220,
) -> str:
    """Draw CKA per layer (dots, interval whiskers), the shuffled reference (grey dashes)
    and the floor of meaning (orange diamonds), shallow layers left."""
    count = max(1, len(values))
    step = (width - LEFT - RIGHT) / count

    def y(v: float) -> float:
        return TOP + (1.0 - v) * (height - TOP - BOTTOM)

    body = _y_axis(height, width, y)
    for i in range(len(values)):
        cx = LEFT + step * (i + 0.5)
        low, high, value = lows[i], highs[i], values[i]
        if low is not None and high is not None:
            body.append(
                f'<line x1="{_n(cx)}" x2="{_n(cx)}" y1="{_n(y(high))}" y2="{_n(y(low))}" '
                f'stroke="{CKA_COLOR}" stroke-width="2"/>'
            )
        if nulls[i] is not None:
            ny = y(nulls[i])  # type: ignore[arg-type]
            half = min(6.0, step * 0.4)
            body.append(
                f'<line x1="{_n(cx - half)}" x2="{_n(cx + half)}" y1="{_n(ny)}" y2="{_n(ny)}" '
                f'stroke="{NULL_COLOR}" stroke-width="2"/>'
            )
        if floors[i] is not None:
            fy = y(floors[i])  # type: ignore[arg-type]
            body.append(
                f'<path d="M{_n(cx)} {_n(fy - 4)}L{_n(cx + 4)} {_n(fy)}L{_n(cx)} {_n(fy + 4)}'
                f'L{_n(cx - 4)} {_n(fy)}Z" fill="{FLOOR_COLOR}"/>'
            )
        if value is not None:
            body.append(f'<circle cx="{_n(cx)}" cy="{_n(y(value))}" r="3.5" fill="{CKA_COLOR}"/>')
    body.append(
        f'<text x="{LEFT}" y="{height - 8}" font-size="11" {FONT} fill="{TEXT_COLOR}">'
        f"layers, shallow → deep ({len(values)})</text>"
    )
    return _frame(width, height, body, "CKA per layer with its interval and references")


def heatmap_chart(
    values: Sequence[Sequence[float | None]], cmap: str = "viridis"
) -> tuple[str, int, int]:
    """Draw a layers-of-A (rows) × layers-of-B (columns) heatmap of values in 0..1.

    Returns the SVG and its size. Cells without a value are white; cells are 10 to 40 px,
    so that a small heatmap is readable and a large one fits a page.
    """
    rows = len(values)
    cols = len(values[0]) if rows else 0
    cell = max(10, min(40, 480 // max(rows, cols, 1)))
    stops = legend_stops(cmap, 11)
    bar = LEFT + cols * cell + 24  # the colour bar's left edge
    width = max(bar + 60, 300)
    height = max(TOP + rows * cell, TOP + 11 * 10) + BOTTOM
    body: list[str] = []
    for r, row in enumerate(values):
        for c, v in enumerate(row):
            color = "#ffffff" if v is None else stops[round(max(0.0, min(1.0, v)) * 10)]
            body.append(
                f'<rect x="{LEFT + c * cell}" y="{TOP + r * cell}" width="{cell}" '
                f'height="{cell}" fill="{color}"/>'
            )
    for i, color in enumerate(reversed(stops)):
        body.append(f'<rect x="{bar}" y="{TOP + i * 10}" width="12" height="10" fill="{color}"/>')
    for value, y in (("1", TOP + 8), ("0", TOP + 11 * 10 - 2)):
        body.append(
            f'<text x="{bar + 16}" y="{y}" font-size="11" {FONT} fill="{TEXT_COLOR}">{value}</text>'
        )
    body.append(
        f'<text x="{LEFT}" y="{height - 8}" font-size="11" {FONT} fill="{TEXT_COLOR}">'
        f"columns: B's layers, shallow → deep ({cols})</text>"
    )
    body.append(
        f'<text x="{LEFT - 6}" y="{TOP + 10}" text-anchor="end" font-size="11" {FONT} '
        f'fill="{TEXT_COLOR}">A</text>'
    )
    return _frame(width, height, body, "Minibatch CKA of every layer pair"), width, height


def lines_chart(
    series: Sequence[Sequence[float | None]],
    ticks: Sequence[str],
    low: float = 0.0,
    high: float = 1.0,
    width: int = 440,
    height: int = 200,
) -> str:
    """Draw one line per series over the x positions ``ticks`` (checkpoints), shallow
    layers light and deep layers dark."""
    count = max(1, len(ticks) - 1)
    span = max(high - low, 1e-12)

    def x(i: int) -> float:
        return LEFT + (width - LEFT - RIGHT) * i / count

    def y(v: float) -> float:
        return TOP + (1.0 - (v - low) / span) * (height - TOP - BOTTOM)

    body: list[str] = []
    for share in (0.0, 0.5, 1.0):
        value = low + share * span
        body.append(
            f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{_n(y(value))}" y2="{_n(y(value))}" '
            'stroke="#e4e4e4"/>'
        )
        body.append(
            f'<text x="{LEFT - 6}" y="{_n(y(value) + 4)}" text-anchor="end" font-size="11" '
            f'{FONT} fill="{TEXT_COLOR}">{value:.3g}</text>'
        )
    shades = legend_stops("viridis", max(2, len(series)))
    for shade, values in zip(shades, series, strict=False):
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if len(points) >= 2:
            path = "M" + "L".join(f"{_n(px)} {_n(py)}" for px, py in points)
            body.append(f'<path d="{path}" fill="none" stroke="{shade}" stroke-width="1.5"/>')
        for px, py in points:
            body.append(f'<circle cx="{_n(px)}" cy="{_n(py)}" r="2" fill="{shade}"/>')
    for i, tick in enumerate(ticks):
        body.append(
            f'<text x="{_n(x(i))}" y="{height - 10}" text-anchor="middle" font-size="10" {FONT} '
            f'fill="{TEXT_COLOR}">{escape(tick)}</text>'
        )
    return _frame(width, height, body, "Values per checkpoint, one line per layer")
