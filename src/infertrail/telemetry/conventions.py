"""Attribute and instrument names: the one place they are spelled.

Classic ML inference has no OpenTelemetry semantic convention yet (semantic-conventions #3420),
so model and prediction attributes live in the ``infertrail.`` namespace, shaped after
OpenInference's classifier proposal. ``docs/conventions.md`` documents every name and unit.
"""

from __future__ import annotations

# Span and log attributes
MODEL_NAME = "infertrail.model.name"
MODEL_VERSION = "infertrail.model.version"
MODEL_SHA256 = "infertrail.model.sha256"
INPUT_SIZE = "infertrail.input.size"
PREDICTION_LABEL = "infertrail.prediction.label"
PREDICTION_SCORE = "infertrail.prediction.score"
PREDICTION_CONFIDENCE = "infertrail.prediction.confidence"
REQUEST_ID = "infertrail.request_id"
TEAM = "infertrail.team"
ENDPOINT = "infertrail.endpoint"
STATUS = "infertrail.status"
# Stable general conventions reused as they are
ERROR_TYPE = "error.type"

SPAN_NAME_INFERENCE = "inference"

# Instruments (OpenTelemetry names; the Prometheus exporter adds unit suffixes)
METRIC_DURATION = "infertrail.inference.duration"
METRIC_CONFIDENCE = "infertrail.prediction.confidence"
METRIC_PREDICTIONS = "infertrail.predictions"
METRIC_ERRORS = "infertrail.inference.errors"
METRIC_INPUT_SIZE = "infertrail.input.size"
METRIC_EXPORT_FAILURES = "infertrail.telemetry.export.failures"

# Bucket boundaries, seconds: 0.1 ms .. 10 s, roughly x2.5 per step.
DURATION_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
INPUT_SIZE_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
