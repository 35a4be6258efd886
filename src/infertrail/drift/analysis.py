"""Window analyzers: more judgements of each closed drift window, beside the univariate detector.

The :class:`~infertrail.drift.window.DriftMonitor` runs the univariate detector on every closed
window, then each registered :class:`WindowAnalyzer` (label-free performance estimates,
multivariate drift, data quality, ...) on the same :class:`~infertrail.drift.detector.DriftWindow`
on the drift thread, off the request path. An analyzer returns an :class:`Analysis`: a JSON-ready
section (``DriftReport.sections[analyzer.name]``) and the alert signals it measured
(``DriftReport.signals``), which alert rules name like any other signal. :func:`run_analyzers`
keeps one failing analyzer from costing the others their sections.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftWindow

__all__ = ["Analysis", "AnalyzerResults", "WindowAnalyzer", "check_analyzers", "run_analyzers"]

_log = logging.getLogger("infertrail.drift")


@dataclass(frozen=True)
class Analysis:
    """One analyzer's judgement of one window.

    ``section``: JSON-ready (None, not NaN, for a missing value). ``signals``: alert signal key
    (``estimated.accuracy``, ``quality.missing_share_max``, ...) to a finite value.
    """

    section: dict[str, Any]
    signals: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class WindowAnalyzer(Protocol):
    """Judges a closed window; ``name`` is its section's key in the drift report."""

    name: str

    def analyze(self, window: DriftWindow) -> Analysis:
        """The analysis of ``window`` (on the drift thread: a few milliseconds, not seconds)."""
        ...


@dataclass
class AnalyzerResults:
    """The sections and signals of a window's analyzers, and which of them failed."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    signals: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def check_analyzers(analyzers: Sequence[WindowAnalyzer]) -> list[WindowAnalyzer]:
    """``analyzers`` as a list; ValueError for one without a name or ``analyze``, or a repeat."""
    seen: set[str] = set()
    for analyzer in analyzers:
        name = getattr(analyzer, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"a window analyzer needs a non-empty str name, got {analyzer!r}")
        if not callable(getattr(analyzer, "analyze", None)):
            raise ValueError(f"window analyzer {name!r} has no analyze(window) method")
        if name in seen:
            raise ValueError(f"two window analyzers are named {name!r}")
        seen.add(name)
    return list(analyzers)


def run_analyzers(
    analyzers: Sequence[WindowAnalyzer], window: DriftWindow, model_name: str
) -> AnalyzerResults:
    """Run every analyzer on ``window``; one that raises or returns garbage is logged, skipped.

    A signal that is not a finite number is dropped (and logged): an alert rule must never see
    NaN. Two analyzers giving the same signal key: the later one is dropped, named in the log.
    """
    results = AnalyzerResults()
    for analyzer in analyzers:
        name = analyzer.name
        try:
            analysis = analyzer.analyze(window)
            if not isinstance(analysis, Analysis):
                raise TypeError(f"analyze() returned {type(analysis).__name__}, not Analysis")
        except Exception:
            results.failed.append(name)
            _log.exception("window analyzer %r failed for model %r", name, model_name)
            continue
        results.sections[name] = analysis.section
        for key, value in _finite(analysis.signals, name, model_name).items():
            if key in results.signals:
                _log.error(
                    "signal %r of analyzer %r repeats another's: dropped", key, analyzer.name
                )
                continue
            results.signals[key] = value
    return results


def _finite(signals: Mapping[str, Any], name: str, model_name: str) -> dict[str, float]:
    out = {}
    for key, value in signals.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            _log.error(
                "analyzer %r gave signal %r = %r for model %r: not a finite number, dropped",
                name,
                key,
                value,
                model_name,
            )
            continue
        out[key] = number
    return out
