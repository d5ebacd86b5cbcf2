"""Bar charts of per-channel values as SVG: numbers in, markup out.

One bar per channel, drawn as one path per colour, with axes and a few round ticks.
SVG instead of a plotting library: a chart of 2,048 channels is written in about a
millisecond, stays sharp at any zoom, and weighs a few kilobytes. The SVG carries no
script and no style element, only presentation attributes, so it satisfies the pages'
Content-Security-Policy, and the same numbers always give the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from xml.sax.saxutils import escape

__all__ = ["HEIGHT", "WIDTH", "bar_chart", "channel_chart", "nice_ticks", "norm_chart"]

WIDTH, HEIGHT = 900, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 14, 42
BAR_COLOR = "#4c72b0"
DOT_COLOR = "#444444"
AXIS_COLOR = "#888888"
TEXT_COLOR = "#333333"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def nice_ticks(low: float, high: float, count: int = 5, integer: bool = False) -> list[float]:
    """Return round tick values covering [low, high], about ``count`` of them."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else [0.0]
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    if integer:
        magnitude = max(magnitude, 1)
    steps = (1, 2, 5, 10) if integer else (1, 2, 2.5, 5, 10)
    step = next(m * magnitude for m in steps if m * magnitude >= raw)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value += step
    return ticks


def _label(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1e4 or abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}"


def _n(value: float) -> str:
    """Format a coordinate compactly and deterministically."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _bars(
    values: Sequence[float],
    colors: Mapping[str, Sequence[int]],
    y: Callable[[float], float],
    step: float,
) -> list[str]:
    """Draw the bars as one path per colour: the base colour first, marked ones over it."""
    zero = y(0.0)
    colour_of = {i: c for c, indices in colors.items() for i in indices}
    paths: dict[str, list[str]] = {}
    for i, value in enumerate(values):
        if not math.isfinite(value) or value == 0:
            continue
        top = min(y(value), zero)
        height = abs(y(value) - zero)
        paths.setdefault(colour_of.get(i, BAR_COLOR), []).append(
            f"M{_n(LEFT + i * step)} {_n(top)}h{_n(step)}v{_n(height)}h-{_n(step)}z"
        )
    order = [BAR_COLOR, *sorted(c for c in paths if c != BAR_COLOR)]
    return [f'<path fill="{c}" d="{"".join(paths[c])}"/>' for c in order if c in paths]


def _dots(overlay: Sequence[float], y: Callable[[float], float], step: float) -> str:
    """Draw one dot per finite value, centred on its bar."""
    radius = min(2.2, max(step * 0.45, 0.9))
    return "".join(
        f"M{_n(LEFT + (i + 0.5) * step - radius)} {_n(y(v))}"
        f"a{_n(radius)} {_n(radius)} 0 1 0 {_n(2 * radius)} 0"
        f"a{_n(radius)} {_n(radius)} 0 1 0 -{_n(2 * radius)} 0"
        for i, v in enumerate(overlay)
        if math.isfinite(v)
    )


def bar_chart(
    values: Sequence[float],
    colors: Mapping[str, Sequence[int]],
    ylabel: str,
    overlay: Sequence[float] | None = None,
    overlay_label: str = "",
) -> str:
    """Draw one bar per channel (``colors`` recolours some indices) and optional dots."""
    finite = [v for v in values if math.isfinite(v)]
    if overlay is not None:
        finite += [v for v in overlay if math.isfinite(v)]
    low = min([0.0, *finite])
    high = max([0.0, *finite])
    if high == low:
        high = low + 1.0
    ticks = nice_ticks(low, high)
    low, high = min(low, ticks[0]), max(high, ticks[-1])
    count = max(len(values), 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / count

    def y(value: float) -> float:
        return TOP + plot_h * (high - value) / (high - low)

    zero = y(0.0)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" {FONT} font-size="12" fill="{TEXT_COLOR}">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    for tick in ticks:
        ty = _n(y(tick))
        parts.append(
            f'<line x1="{LEFT - 4}" y1="{ty}" x2="{LEFT}" y2="{ty}" stroke="{AXIS_COLOR}"/>'
            f'<text x="{LEFT - 7}" y="{ty}" dy="4" text-anchor="end">{_label(tick)}</text>'
        )
    parts += _bars(values, colors, y, step)
    if overlay is not None:
        parts.append(f'<path fill="{DOT_COLOR}" d="{_dots(overlay, y, step)}"/>')
        parts.append(
            f'<circle cx="{WIDTH - RIGHT - 60}" cy="{TOP + 6}" r="2.5" fill="{DOT_COLOR}"/>'
            f'<text x="{WIDTH - RIGHT - 52}" y="{TOP + 10}">{escape(overlay_label)}</text>'
        )
    parts.append(
        f'<line x1="{LEFT}" y1="{_n(zero)}" x2="{WIDTH - RIGHT}" y2="{_n(zero)}" stroke="{AXIS_COLOR}"/>'
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{TOP + plot_h}" stroke="{AXIS_COLOR}"/>'
    )
    for tick in nice_ticks(0, count - 1, 8, integer=True) if count > 1 else [0.0]:
        index = round(tick)
        tx = _n(LEFT + (index + 0.5) * step)
        parts.append(
            f'<line x1="{tx}" y1="{TOP + plot_h}" x2="{tx}" y2="{TOP + plot_h + 4}" stroke="{AXIS_COLOR}"/>'
            f'<text x="{tx}" y="{TOP + plot_h + 17}" text-anchor="middle">{index}</text>'
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">channel index</text>'
        f'<text transform="translate(14 {TOP + plot_h / 2:.0f}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
        "</svg>\n"
    )
    return "".join(parts)


def channel_chart(
    means: Sequence[float],
    maxima: Sequence[float],
    dead: Sequence[int],
    strongest: Sequence[int],
    dead_color: str,
    strong_color: str,
) -> str:
    """Chart each channel's mean activation (bars) and maximum (dots), marking dead and strongest."""
    return bar_chart(
        means, {strong_color: strongest, dead_color: dead}, "mean activation", maxima, "max"
    )


def norm_chart(
    norms: Sequence[float],
    dead: Sequence[int],
    duplicate: Sequence[int],
    dead_color: str,
    duplicate_color: str,
) -> str:
    """Chart each filter's weight L2 norm, marking dead and near-duplicate filters."""
    return bar_chart(norms, {duplicate_color: duplicate, dead_color: dead}, "weight L2 norm")
