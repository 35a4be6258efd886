"""Drift monitoring: reference profiles, drift statistics, windows of live inputs, metrics.

Build a :class:`Profile` from training data once, save it next to the model, and register a
:class:`DriftMonitor` as a ``Monitor`` sink; reports go to listeners such as
:class:`DriftMetrics`. docs/drift.md describes the rule, the statistics and the metrics.
"""

from __future__ import annotations

from infertrail.drift.build import (
    build_image_profile,
    build_tabular_profile,
    build_text_profile,
)
from infertrail.drift.calibration import Calibration, calibrate
from infertrail.drift.detector import (
    DriftDetector,
    DriftReport,
    DriftWindow,
    FeatureDrift,
    PredictionDrift,
)
from infertrail.drift.metrics import DriftMetrics
from infertrail.drift.profile import FeatureProfile, Profile, profile_path
from infertrail.drift.profile_io import ProfileError, load_profile, save_profile
from infertrail.drift.reference import (
    FeatureSpec,
    ModelCodeError,
    ReferenceBuild,
    ReferenceInputError,
    build_reference,
    load_schema,
    open_table,
    resolve_model,
)
from infertrail.drift.rule import DriftConfig, default_method
from infertrail.drift.window import DriftMonitor, DriftMonitorStats

__all__ = [
    "Calibration",
    "DriftConfig",
    "DriftDetector",
    "DriftMetrics",
    "DriftMonitor",
    "DriftMonitorStats",
    "DriftReport",
    "DriftWindow",
    "FeatureDrift",
    "FeatureProfile",
    "FeatureSpec",
    "ModelCodeError",
    "PredictionDrift",
    "Profile",
    "ProfileError",
    "ReferenceBuild",
    "ReferenceInputError",
    "build_image_profile",
    "build_reference",
    "build_tabular_profile",
    "build_text_profile",
    "calibrate",
    "default_method",
    "load_profile",
    "load_schema",
    "open_table",
    "profile_path",
    "resolve_model",
    "save_profile",
]
