"""How the console and the reports show values, and the Jinja environment both render with.

A missing value is shown as an en dash (:data:`MISSING`), never as a made-up zero.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import jinja2

__all__ = ["MISSING", "environment", "ms", "num", "pct", "ts"]

MISSING = "\u2013"


def _absent(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def num(value: Any, digits: int = 3) -> str:
    """An int with thousands separators, a float to ``digits`` significant digits."""
    if isinstance(value, bool):
        return str(value).lower()
    if _absent(value):
        return MISSING
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def pct(value: Any, digits: int = 1) -> str:
    """A ratio as a percentage."""
    return MISSING if _absent(value) else f"{100 * value:.{digits}f}%"


def ms(value: Any) -> str:
    """Milliseconds, as seconds from one second on."""
    if _absent(value):
        return MISSING
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def ts(value: Any) -> str:
    """A UTC time (epoch seconds or a datetime) to the second."""
    if value is None:
        return MISSING
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value)


def environment() -> jinja2.Environment:
    """The package's templates, autoescaped, strict about undefined names, with the filters."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("infertrail.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=num, pct=pct, ms=ms, ts=ts)
    return env
