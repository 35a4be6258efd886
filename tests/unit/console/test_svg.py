"""The console's SVG charts: well-formed, accessible, honest about gaps, zoom links."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from infertrail.console.svg import Series, bar_chart, line_chart, zoom_ranges

NS = {"s": "http://www.w3.org/2000/svg"}
T0 = 1_765_000_800.0  # a whole hour, UTC


def _text(element: ET.Element, path: str) -> str:
    found = element.find(path, NS)
    assert found is not None and found.text is not None, path
    return found.text


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def test_line_chart_is_accessible_and_titles_every_point() -> None:
    svg = parse(
        line_chart(
            [
                Series("requests", [(T0, 10.0), (T0 + 60, 20.0), (T0 + 120, 15.0)]),
                Series("errors", [(T0, 1.0), (T0 + 60, 0.0), (T0 + 120, 2.0)]),
            ],
            y_label="per minute",
            title="Traffic",
        )
    )
    assert svg.get("role") == "img"
    assert _text(svg, "s:title") == "Traffic"
    desc = _text(svg, "s:desc")
    assert "requests, errors" in desc and "between 0 and 20" in desc
    assert svg.get("aria-labelledby") == "chart-traffic-t chart-traffic-d"
    hovers = [_text(c, "s:title") for c in svg.iter("{http://www.w3.org/2000/svg}circle")]
    assert len(hovers) == 6
    assert "requests: 20 at 2025-12-06 06:01:00 UTC" in hovers
    # the second series is told apart by a dash pattern, not only by colour
    lines = list(svg.iter("{http://www.w3.org/2000/svg}polyline"))
    assert lines[0].get("stroke-dasharray") is None and lines[1].get("stroke-dasharray")
    legend = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert "requests" in legend and "errors" in legend
    assert "style=" not in str(line_chart([Series("a", [(T0, 1.0)])], y_label="y", title="t"))


def test_gaps_break_the_line_and_are_never_zero() -> None:
    svg = parse(
        line_chart(
            [
                Series(
                    "p99",
                    [(T0, 5.0), (T0 + 60, 6.0), (T0 + 120, None), (T0 + 180, 7.0), (T0 + 240, 8.0)],
                )
            ],
            y_label="ms",
            title="Latency",
        )
    )
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}polyline"))) == 2
    assert len(list(svg.iter("{http://www.w3.org/2000/svg}circle"))) == 4


def test_step_chart_holds_each_value() -> None:
    svg = parse(
        line_chart(
            [Series("s", [(0.0, 1.0), (10.0, 3.0)])],
            y_label="y",
            title="t",
            x_is_time=False,
            step=True,
        )
    )
    (line,) = svg.iter("{http://www.w3.org/2000/svg}polyline")
    pts = str(line.get("points")).split()
    assert len(pts) == 3 and pts[1].split(",")[1] == pts[0].split(",")[1]


def test_empty_chart_says_no_data() -> None:
    text = str(
        line_chart(
            [Series("a", [(T0, None)])], y_label="ms", title="Latency", x_range=(T0, T0 + 3600)
        )
    )
    svg = parse(text)
    assert "no data in this range" in _text(svg, "s:desc")
    assert "No data in this range" in text and "<circle" not in text


def test_zoom_links_cover_the_range() -> None:
    svg = parse(
        line_chart(
            [Series("a", [(T0, 1.0), (T0 + 3600, 2.0)])],
            y_label="y",
            title="t",
            x_range=(T0, T0 + 3600),
            zoom_url=lambda lo, hi: f"?from={lo:.0f}&to={hi:.0f}",
        )
    )
    links = [a.get("href") for a in svg.iter("{http://www.w3.org/2000/svg}a")]
    assert links[0] == f"?from={T0:.0f}&to={T0 + 900:.0f}"
    assert links[-1] == f"?from={T0 + 2700:.0f}&to={T0 + 3600:.0f}"
    assert len(links) == 4
    assert zoom_ranges(0, 10, 2) == [(0, 5), (5, 10)]
    with pytest.raises(ValueError, match="bands"):
        zoom_ranges(0, 10, 0)
    with pytest.raises(ValueError, match="hi > lo"):
        zoom_ranges(10, 10)


def test_names_are_escaped() -> None:
    text = str(line_chart([Series("<b>&", [(T0, 1.0)])], y_label="a<b", title='x"y'))
    parse(text)
    assert "<b>" not in text and "&lt;b&gt;&amp;" in text


def test_bar_chart_shows_missing_as_dash() -> None:
    svg = parse(bar_chart([("a", 3.0), ("b", None), ("c", 1.5)], y_label="USD", title="Cost"))
    rects = list(svg.iter("{http://www.w3.org/2000/svg}rect"))
    assert [_text(r, "s:title") for r in rects] == ["a: 3", "c: 1.5"]
    assert "b: \u2013" in _text(svg, "s:desc")
    assert "No data" in str(bar_chart([("a", None)], y_label="y", title="t"))
    with pytest.raises(ValueError, match="200x120"):
        bar_chart([("a", 1.0)], y_label="y", title="t", width=10)
