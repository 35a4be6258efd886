"""What an estimator concludes about one window: per metric a value, its band, thresholds, alert.

Shared by CBPE (classification) and DLE (regression). A :class:`MetricReference` is what was
learned from the labelled reference for one metric: the alert thresholds (mean -/+ 3 sd of the
metric over reference chunks, within the metric's limits) and the sampling error of one row.
:meth:`MetricReference.judge` turns an estimated value on n rows into a :class:`MetricEstimate`:
the band is the value -/+ 3 standard errors (``unit / sqrt(n)``), clipped to the limits; the
alert compares the *value* with the thresholds, never the band (as NannyML does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from infertrail.estimation.metrics import BAND_SIGMAS


def finite_or_none(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing or not finite (JSON has no NaN)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


@dataclass(frozen=True)
class MetricEstimate:
    """One metric on one window: the estimate, its sampling-error band and the verdict."""

    name: str
    value: float | None
    sampling_error: float | None
    lower_band: float | None
    upper_band: float | None
    lower_threshold: float | None
    upper_threshold: float | None
    alert: bool

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (None for what is unknown)."""
        return {
            "value": self.value,
            "sampling_error": self.sampling_error,
            "lower_band": self.lower_band,
            "upper_band": self.upper_band,
            "lower_threshold": self.lower_threshold,
            "upper_threshold": self.upper_threshold,
            "alert": self.alert,
        }


@dataclass(frozen=True)
class MetricReference:
    """One metric as the labelled reference has it: thresholds and one row's sampling error.

    ``chunk_values``: the metric realized on each reference chunk (None where undefined), from
    which the thresholds came. ``lower_limit``/``upper_limit``: the metric's range (0..1 for the
    classification metrics, 0.. for errors), which bounds both thresholds and bands.
    """

    name: str
    lower_threshold: float | None
    upper_threshold: float | None
    sampling_error_unit: float | None
    chunk_values: tuple[float | None, ...] = ()
    lower_limit: float | None = 0.0
    upper_limit: float | None = 1.0

    def sampling_error(self, n: int) -> float | None:
        """The standard error of the metric on ``n`` rows."""
        if self.sampling_error_unit is None or n < 1:
            return None
        return self.sampling_error_unit / math.sqrt(n)

    def judge(self, value: float, n: int) -> MetricEstimate:
        """The estimate ``value`` on ``n`` rows with its band and alert (value off thresholds)."""
        v = finite_or_none(value)
        se = self.sampling_error(n)
        lower_band = upper_band = None
        if v is not None and se is not None:
            lower_band, upper_band = v - BAND_SIGMAS * se, v + BAND_SIGMAS * se
            if self.lower_limit is not None:
                lower_band = max(lower_band, self.lower_limit)
            if self.upper_limit is not None:
                upper_band = min(upper_band, self.upper_limit)
        alert = v is not None and (
            (self.lower_threshold is not None and v < self.lower_threshold)
            or (self.upper_threshold is not None and v > self.upper_threshold)
        )
        return MetricEstimate(
            self.name,
            v,
            se,
            lower_band,
            upper_band,
            self.lower_threshold,
            self.upper_threshold,
            alert,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (the inverse of :meth:`from_dict`)."""
        return {
            "lower_threshold": self.lower_threshold,
            "upper_threshold": self.upper_threshold,
            "sampling_error_unit": self.sampling_error_unit,
            "chunk_values": list(self.chunk_values),
            "lower_limit": self.lower_limit,
            "upper_limit": self.upper_limit,
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> MetricReference:
        """Parse :meth:`as_dict`'s form; ValueError naming the metric and field that is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError(f"metric {name!r} must be an object, got {type(data).__name__}")
        expected = {
            "lower_threshold",
            "upper_threshold",
            "sampling_error_unit",
            "chunk_values",
            "lower_limit",
            "upper_limit",
        }
        if set(data) != expected:
            missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
            raise ValueError(f"metric {name!r}: fields missing {missing}, unknown {extra}")
        values = data["chunk_values"]
        if not isinstance(values, list):
            raise ValueError(f"metric {name!r}: chunk_values must be a list")
        reference = cls(
            name,
            _optional_number(data, "lower_threshold", name),
            _optional_number(data, "upper_threshold", name),
            _optional_number(data, "sampling_error_unit", name),
            tuple(_optional_number({"chunk value": v}, "chunk value", name) for v in values),
            _optional_number(data, "lower_limit", name),
            _optional_number(data, "upper_limit", name),
        )
        unit = reference.sampling_error_unit
        if unit is not None and unit < 0:
            raise ValueError(f"metric {name!r}: sampling_error_unit must be >= 0, got {unit}")
        lo, hi = reference.lower_threshold, reference.upper_threshold
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"metric {name!r}: lower_threshold {lo} is above upper {hi}")
        return reference


def _optional_number(data: Mapping[str, Any], key: str, metric: str) -> float | None:
    value = data[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"metric {metric!r}: {key} must be a finite number or null, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Estimate:
    """Every estimated metric of one window of ``n`` rows.

    ``confusion_matrix``: CBPE's expected counts (rows: true class, columns: predicted class,
    in ``classes`` order); None for regression.
    """

    n: int
    metrics: dict[str, MetricEstimate]
    classes: tuple[str, ...] = ()
    confusion_matrix: NDArray[np.float64] | None = field(default=None, compare=False)

    @property
    def alert(self) -> bool:
        """True when any metric's estimate lies outside its thresholds."""
        return any(m.alert for m in self.metrics.values())

    def value(self, name: str) -> float | None:
        """The estimated value of metric ``name`` (None when undefined on this window)."""
        return self.metrics[name].value

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form: n, the metrics, the alert and the expected confusion matrix."""
        out: dict[str, Any] = {
            "n": self.n,
            "metrics": {name: m.as_dict() for name, m in self.metrics.items()},
            "alert": self.alert,
        }
        if self.confusion_matrix is not None:
            out["confusion_matrix"] = {
                "classes": list(self.classes),
                "expected_counts": self.confusion_matrix.tolist(),
            }
        return out
