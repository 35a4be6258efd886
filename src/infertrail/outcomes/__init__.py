"""Delayed outcomes joined back to the predictions that caused them.

The runtime's ``OutcomeLoop`` (``runtime/outcomes.py``) wires it into a service: a predictions
index (a background Monitor sink), ``POST /v1/outcomes`` (idempotent, audited), performance
windows feeding ``outcome.*`` alert signals and gauges. ``performance_report``
joins and measures, and with :class:`Estimators` sets CBPE's estimates over every prediction
beside the realized metrics; ``infertrail outcomes ingest|report`` is the CLI. See
docs/outcomes.md.
"""

from infertrail.outcomes.estimated import EstimatedPerformance, Estimators, MetricComparison
from infertrail.outcomes.index import PredictionIndex
from infertrail.outcomes.ingest import (
    AuditUnavailableError,
    IngestResult,
    OutcomeAudit,
    OutcomeService,
    outcome_record,
)
from infertrail.outcomes.join import (
    OutcomeSpec,
    Performance,
    PerformanceReport,
    kpi_bands,
    performance,
    performance_report,
    spec_from_settings,
)
from infertrail.outcomes.performance import (
    PerformanceMetrics,
    PerformanceWindows,
    WindowReport,
    engine_listener,
    performance_signals,
)
from infertrail.outcomes.schema import Outcome, OutcomeValidationError, parse_outcomes
from infertrail.outcomes.store import (
    MAX_PROBABILITY_CLASSES,
    OutcomeConflictError,
    OutcomeStore,
    OutcomeStoreError,
    Prediction,
    outcomes_db_path,
)

__all__ = [
    "MAX_PROBABILITY_CLASSES",
    "AuditUnavailableError",
    "EstimatedPerformance",
    "Estimators",
    "IngestResult",
    "MetricComparison",
    "Outcome",
    "OutcomeAudit",
    "OutcomeConflictError",
    "OutcomeService",
    "OutcomeSpec",
    "OutcomeStore",
    "OutcomeStoreError",
    "OutcomeValidationError",
    "Performance",
    "PerformanceMetrics",
    "PerformanceReport",
    "PerformanceWindows",
    "Prediction",
    "PredictionIndex",
    "WindowReport",
    "engine_listener",
    "kpi_bands",
    "outcome_record",
    "outcomes_db_path",
    "parse_outcomes",
    "performance",
    "performance_report",
    "performance_signals",
    "spec_from_settings",
]
