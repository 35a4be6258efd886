"""The drift rule: which method judges a feature, and the thresholds (:class:`DriftConfig`).

The default follows Evidently's rule (tests for small references, distances for large ones) and
also sends small windows to tests; docs/drift.md lists every difference and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from infertrail.drift.profile import FeatureProfile
from infertrail.drift.stats import Correction, KsMode

Method = Literal["ks", "chisquare", "ztest", "wasserstein", "jensenshannon", "psi"]
TEST_METHODS: frozenset[str] = frozenset({"ks", "chisquare", "ztest"})
DISTANCE_METHODS: frozenset[str] = frozenset({"wasserstein", "jensenshannon", "psi"})
CONTINUOUS_ONLY = frozenset({"ks", "wasserstein"})
DISCRETE_ONLY = frozenset({"chisquare", "ztest"})


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds and choices of the drift rule; the defaults are documented in docs/drift.md."""

    alpha: float = 0.05
    distance_threshold: float = 0.1
    correction: Correction = "bh"
    drift_share: float = 0.5
    method: Method | None = None
    feature_methods: dict[str, Method] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    small_reference: int = 1000
    ks_mode: KsMode = "auto"
    ood_feature_share: float = 0.1
    oov_threshold: float = 0.5
    low_confidence: float = 0.6

    def __post_init__(self) -> None:
        for name in ("alpha", "drift_share", "ood_feature_share", "oov_threshold"):
            v = getattr(self, name)
            if not 0.0 < v <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {v!r}")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError(f"low_confidence must lie in [0, 1], got {self.low_confidence!r}")
        if not self.distance_threshold > 0:
            raise ValueError(f"distance_threshold must be positive, got {self.distance_threshold}")
        if self.correction not in ("none", "bonferroni", "bh"):
            raise ValueError(f"correction {self.correction!r}; valid: none, bonferroni, bh")
        if self.ks_mode not in ("auto", "exact", "asymp"):
            raise ValueError(f"ks_mode {self.ks_mode!r}; valid: auto, exact, asymp")
        valid = TEST_METHODS | DISTANCE_METHODS
        for where, m in [("method", self.method), *self.feature_methods.items()]:
            if m is not None and m not in valid:
                raise ValueError(f"unknown drift method {m!r} for {where}; valid: {sorted(valid)}")
        for feat, t in self.thresholds.items():
            if not (isinstance(t, int | float) and math.isfinite(t) and t > 0):
                raise ValueError(f"threshold for {feat!r} must be a positive number, got {t!r}")


def default_method(
    feature: FeatureProfile, small_reference: int = 1000, window_size: int | None = None
) -> Method:
    """Evidently's rule (tests up to ``small_reference`` reference rows, distances beyond),
    with one change: a window of at most ``small_reference`` rows is judged by a test too,
    because the 0.1 distance threshold sits inside the sampling noise of small windows."""
    small = feature.count <= small_reference or (
        window_size is not None and window_size <= small_reference
    )
    if feature.is_discrete:
        if small:
            return "ztest" if feature.n_categories <= 2 else "chisquare"
        return "jensenshannon"
    return "ks" if small else "wasserstein"


def natural_distance(f: FeatureProfile) -> str:
    """The distance every feature reports: JS over categories, else normed Wasserstein."""
    return "jensenshannon" if f.is_discrete else "wasserstein"
