"""Small server-side SVG charts for the console: no JavaScript, no CDN, readable by assistive
technology.

Every chart is one ``<svg role="img">`` (``role="figure"`` when it holds zoom links: an image
may hold nothing focusable) with a ``<title>`` (its name) and a ``<desc>`` (what it
shows and its range, in words); each data point carries its own ``<title>`` so hovering (or a
screen reader's object navigation) tells the exact value. Series are told apart by the legend's
text and by their dash pattern, never by colour alone. A data table fallback is the page's
job: a chart is an addition to the numbers, not their only place.

Zooming is plain links: with ``zoom_url`` the time axis is cut into ``zoom_bands`` bands, each an
``<a>`` to the same page over that band (``?from=&to=``, built by the caller); the same ranges
come from :func:`zoom_ranges` for pages that also list them as text links.

Only SVG presentation attributes are used (``stroke=``, ``fill=``), never ``style=``: the
console's Content-Security-Policy forbids inline styles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from markupsafe import Markup, escape

__all__ = ["Chart", "Series", "bar_chart", "line_chart", "zoom_ranges"]

#: Colour and dash pattern per series index (colours pass WCAG AA on white; the dashes carry
#: the same distinction for readers who cannot tell the colours apart).
_STYLES = (
    ("#0b5cad", ""),
    ("#a40e26", "6 3"),
    ("#116329", "2 3"),
    ("#7d4e00", "8 3 2 3"),
    ("#5a32a3", "4 4"),
    ("#1b1f24", "1 2"),
)
_MARGIN_LEFT, _MARGIN_RIGHT, _MARGIN_TOP, _MARGIN_BOTTOM = 56, 12, 12, 40
#: How a missing value is written (as the console's templates do).
_MISSING = "\u2013"
#: Points beyond this many per series get no hover circle (the line still shows them).
_MAX_MARKERS = 400
#: Candidate distances between time ticks, seconds.
_TIME_STEPS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800, 1209600, 2592000,
)  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One named line: ``points`` are ``(x, y)``; x is epoch seconds when the chart is over
    time; a ``None`` y is a gap (no data there), drawn as a break in the line, never as 0."""

    name: str
    points: Sequence[tuple[float, float | None]]


def _fmt_num(value: float) -> str:
    """A value for a label: three significant digits, thousands separated."""
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _fmt_time(ts: float, span: float) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    if span <= 2 * 86400:
        return moment.strftime("%H:%M")
    return moment.strftime("%m-%d %H:%M") if span <= 7 * 86400 else moment.strftime("%Y-%m-%d")


def _fmt_time_full(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    value = start
    while value < hi + step * 0.5:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _time_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Tick instants on round UTC boundaries, about ``count`` of them, inside [lo, hi]."""
    span = max(hi - lo, 1.0)
    step = next((s for s in _TIME_STEPS if span / s <= count), _TIME_STEPS[-1])
    first = math.ceil(lo / step) * step
    return [float(t) for t in range(int(first), int(hi) + 1, step)]


def zoom_ranges(lo: float, hi: float, bands: int = 4) -> list[tuple[float, float]]:
    """``bands`` equal consecutive sub-ranges of [lo, hi] (the chart's zoom targets)."""
    if bands < 1:
        raise ValueError(f"bands must be at least 1, got {bands}")
    if not hi > lo:
        raise ValueError(f"the range must have hi > lo, got lo={lo} hi={hi}")
    width = (hi - lo) / bands
    return [(lo + i * width, lo + (i + 1) * width) for i in range(bands)]


def _markup(parts: list[str]) -> Markup:
    """The chart's pieces as markup: every text in them went through ``escape`` and every
    number was formatted here, so nothing from the caller reaches the page unescaped."""
    return Markup("".join(parts))  # noqa: S704 -- built from escaped parts only (see above)


def _svg_open(
    width: int, height: int, title: str, desc: str, label_id: str, *, links: bool = False
) -> str:
    # A chart with zoom links is a figure, not an image: an image may hold no focusable link.
    role = "figure" if links else "img"
    return (
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" role="{role}" '
        f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'aria-labelledby="{label_id}-t {label_id}-d">'
        f'<title id="{label_id}-t">{escape(title)}</title>'
        f'<desc id="{label_id}-d">{escape(desc)}</desc>'
    )


def _chart_id(title: str) -> str:
    """A stable id for a chart's title and desc (several charts may share a page)."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")[:40]
    return f"chart-{slug or 'x'}"


def line_chart(
    series: Sequence[Series],
    *,
    width: int = 720,
    height: int = 240,
    y_label: str,
    title: str,
    x_is_time: bool = True,
    step: bool = False,
    x_range: tuple[float, float] | None = None,
    y_min: float | None = 0.0,
    fmt: Callable[[float], str] = _fmt_num,
    zoom_url: Callable[[float, float], str] | None = None,
    zoom_bands: int = 4,
) -> Markup:
    """A line chart (``step=True``: a step chart, each value held until the next) of one or
    more series sharing the y axis.

    ``x_range``: the axis' range (e.g. the page's time range, so empty ends show as empty);
    by default the data's. ``y_min``: the axis' floor (None: the data's minimum). ``fmt``
    formats y values for ticks and hover titles. ``zoom_url(lo, hi)``: see the module doc.
    With no point at all the chart says so in its body and its description.
    """
    if width < 200 or height < 120:
        raise ValueError(f"a chart needs at least 200x120 pixels, got {width}x{height}")
    xs = [x for s in series for x, y in s.points if y is not None]
    ys = [y for s in series for _, y in s.points if y is not None]
    lo_x, hi_x = x_range if x_range is not None else (min(xs, default=0.0), max(xs, default=1.0))
    if hi_x <= lo_x:
        hi_x = lo_x + 1.0
    names = ", ".join(s.name for s in series) or "no series"
    span_words = (
        f"from {_fmt_time_full(lo_x)} to {_fmt_time_full(hi_x)}"
        if x_is_time
        else f"from {fmt(lo_x)} to {fmt(hi_x)}"
    )
    cid = _chart_id(title)
    if not ys:
        desc = f"{y_label} ({names}) {span_words}: no data in this range."
        return _markup(
            [
                _svg_open(width, height, title, desc, cid),
                f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">'
                "No data in this range</text></svg>",
            ]
        )
    lo_y = min(ys) if y_min is None else min(y_min, min(ys))
    y_ticks = _nice_ticks(lo_y, max(ys))
    lo_y, hi_y = y_ticks[0], y_ticks[-1]
    if hi_y <= lo_y:
        hi_y = lo_y + 1.0
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM - 16 * ((len(series) + 2) // 3)

    def px(x: float) -> float:
        return _MARGIN_LEFT + (x - lo_x) / (hi_x - lo_x) * plot_w

    def py(y: float) -> float:
        return _MARGIN_TOP + (1 - (y - lo_y) / (hi_y - lo_y)) * plot_h

    def x_words(x: float) -> str:
        return _fmt_time_full(x) if x_is_time else fmt(x)

    desc = f"{y_label} of {names} {span_words}; values between {fmt(min(ys))} and {fmt(max(ys))}."
    out = [_svg_open(width, height, title, desc, cid, links=zoom_url is not None)]
    bottom = _MARGIN_TOP + plot_h
    out.append('<g aria-hidden="true">')
    for tick in y_ticks:
        y = py(tick)
        out.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + plot_w}" y2="{y:.1f}" '
            f'stroke="#e3e8ee"/><text x="{_MARGIN_LEFT - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(fmt(tick))}</text>'
        )
    x_ticks = _time_ticks(lo_x, hi_x) if x_is_time else _nice_ticks(lo_x, hi_x, 6)
    for tick in x_ticks:
        if not lo_x <= tick <= hi_x:
            continue
        x = px(tick)
        label = _fmt_time(tick, hi_x - lo_x) if x_is_time else fmt(tick)
        out.append(
            f'<line x1="{x:.1f}" y1="{bottom}" x2="{x:.1f}" y2="{bottom + 4}" stroke="#6b7683"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>'
        )
    out.append(
        f'<line x1="{_MARGIN_LEFT}" y1="{bottom}" x2="{_MARGIN_LEFT + plot_w}" y2="{bottom}" '
        f'stroke="#6b7683"/><text x="12" y="{_MARGIN_TOP + plot_h / 2:.0f}" '
        f'text-anchor="middle" transform="rotate(-90 12 {_MARGIN_TOP + plot_h / 2:.0f})">'
        f"{escape(y_label)}</text></g>"
    )
    if zoom_url is not None:
        out.append('<g class="zoom">')
        for band_lo, band_hi in zoom_ranges(lo_x, hi_x, zoom_bands):
            words = f"Zoom to {x_words(band_lo)} \u2013 {x_words(band_hi)}"
            out.append(
                f'<a href="{escape(zoom_url(band_lo, band_hi))}" aria-label="{escape(words)}">'
                f'<rect x="{px(band_lo):.1f}" y="{_MARGIN_TOP}" '
                f'width="{px(band_hi) - px(band_lo):.1f}" height="{plot_h}" fill="#ffffff" '
                f'fill-opacity="0"><title>{escape(words)}</title></rect></a>'
            )
        out.append("</g>")
    for index, s in enumerate(series):
        colour, dash = _STYLES[index % len(_STYLES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        points = sorted(s.points, key=lambda p: p[0])
        for run in _runs(points):
            coords: list[str] = []
            for i, (x, y) in enumerate(run):
                if step and i > 0:
                    coords.append(f"{px(x):.1f},{py(run[i - 1][1]):.1f}")
                coords.append(f"{px(x):.1f},{py(y):.1f}")
            if len(coords) > 1:
                out.append(
                    f'<polyline fill="none" stroke="{colour}" stroke-width="2"{dash_attr} '
                    f'points="{" ".join(coords)}"/>'
                )
        present = [(x, y) for x, y in points if y is not None]
        if len(present) <= _MAX_MARKERS:
            out.append(f'<g fill="{colour}">')
            for x, y in present:
                out.append(
                    f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3"><title>'
                    f"{escape(s.name)}: {escape(fmt(y))} at {escape(x_words(x))}"
                    "</title></circle>"
                )
            out.append("</g>")
    out.append(_legend(series, width, height))
    out.append("</svg>")
    return _markup(out)


def _runs(points: Sequence[tuple[float, float | None]]) -> list[list[tuple[float, float]]]:
    """The points split at gaps (None values) into runs of present values."""
    runs: list[list[tuple[float, float]]] = [[]]
    for x, y in points:
        if y is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((x, y))
    return [run for run in runs if run]


def _legend(series: Sequence[Series], width: int, height: int) -> str:
    """The series names with their line sample, three a row, under the axis."""
    out = ['<g class="legend">']
    rows = (len(series) + 2) // 3
    for index, s in enumerate(series):
        colour, dash = _STYLES[index % len(_STYLES)]
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        x = _MARGIN_LEFT + (index % 3) * ((width - _MARGIN_LEFT) / 3)
        y = height - 8 - 16 * (rows - 1 - index // 3)
        out.append(
            f'<line x1="{x:.0f}" y1="{y - 4}" x2="{x + 24:.0f}" y2="{y - 4}" stroke="{colour}" '
            f'stroke-width="2"{dash_attr}/><text x="{x + 30:.0f}" y="{y}">{escape(s.name)}</text>'
        )
    out.append("</g>")
    return "".join(out)


def bar_chart(
    bars: Sequence[tuple[str, float | None]],
    *,
    width: int = 720,
    height: int = 240,
    y_label: str,
    title: str,
    fmt: Callable[[float], str] = _fmt_num,
) -> Markup:
    """A vertical bar chart of labelled values; a ``None`` value is shown as an en dash with no bar
    (missing, not zero). Each bar's ``<title>`` gives its label and value."""
    if width < 200 or height < 120:
        raise ValueError(f"a chart needs at least 200x120 pixels, got {width}x{height}")
    values = [v for _, v in bars if v is not None]
    cid = _chart_id(title)
    if not values:
        desc = f"{y_label}: no data."
        return _markup(
            [
                _svg_open(width, height, title, desc, cid),
                f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle">'
                "No data</text></svg>",
            ]
        )
    ticks = _nice_ticks(min(0.0, min(values)), max(values))
    lo, hi = ticks[0], ticks[-1]
    if hi <= lo:
        hi = lo + 1.0
    plot_w = width - _MARGIN_LEFT - _MARGIN_RIGHT
    plot_h = height - _MARGIN_TOP - _MARGIN_BOTTOM

    def py(y: float) -> float:
        return _MARGIN_TOP + (1 - (y - lo) / (hi - lo)) * plot_h

    listed = "; ".join(f"{label}: {_MISSING if v is None else fmt(v)}" for label, v in bars)
    out = [_svg_open(width, height, title, f"{y_label} per bar. {listed}.", cid)]
    bottom = _MARGIN_TOP + plot_h
    out.append('<g aria-hidden="true">')
    for tick in ticks:
        y = py(tick)
        out.append(
            f'<line x1="{_MARGIN_LEFT}" y1="{y:.1f}" x2="{_MARGIN_LEFT + plot_w}" y2="{y:.1f}" '
            f'stroke="#e3e8ee"/><text x="{_MARGIN_LEFT - 4}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(fmt(tick))}</text>'
        )
    out.append("</g>")
    slot = plot_w / max(len(bars), 1)
    zero = py(0.0)
    for index, (label, value) in enumerate(bars):
        x = _MARGIN_LEFT + index * slot + slot * 0.15
        if value is None:
            out.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{zero - 4:.1f}" text-anchor="middle">'
                f"\u2013<title>{escape(label)}: no data</title></text>"
            )
        else:
            top, h = min(py(value), zero), abs(py(value) - zero)
            out.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="#0b5cad"><title>{escape(label)}: {escape(fmt(value))}</title></rect>'
            )
        out.append(
            f'<text x="{x + slot * 0.35:.1f}" y="{bottom + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<line x1="{_MARGIN_LEFT}" y1="{zero:.1f}" x2="{_MARGIN_LEFT + plot_w}" y2="{zero:.1f}" '
        f'stroke="#6b7683"/><text x="12" y="{_MARGIN_TOP + plot_h / 2:.0f}" '
        f'text-anchor="middle" transform="rotate(-90 12 {_MARGIN_TOP + plot_h / 2:.0f})">'
        f"{escape(y_label)}</text></svg>"
    )
    return _markup(out)


class Chart(dict[str, Any]):
    """A line chart as page data: in a template ``{{ chart }}`` renders it as SVG
    (:func:`line_chart`); in a page's JSON twin it is its data (title, axis label, range and
    the series' points), since a page function returns one dict serving both."""

    def __init__(
        self,
        series: Sequence[Series],
        *,
        title: str,
        y_label: str,
        x_range: tuple[float, float] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            title=title,
            y_label=y_label,
            x_range=None if x_range is None else list(x_range),
            series=[{"name": s.name, "points": [list(p) for p in s.points]} for s in series],
        )
        self._args = (series, title, y_label, x_range, options)

    def __html__(self) -> str:
        series, title, y_label, x_range, options = self._args
        return str(line_chart(series, title=title, y_label=y_label, x_range=x_range, **options))
