"""Delayed outcomes joined back to the predictions that caused them.

The runtime's ``OutcomeLoop`` (``runtime/outcomes.py``) wires it into a service: a predictions
index (a background Monitor sink), ``POST /v1/outcomes`` (idempotent, audited), performance
windows feeding ``outcome.*`` alert signals and gauges. ``performance_report``
joins and measures; ``infertrail outcomes ingest|report`` is the CLI. See docs/outcomes.md.
"""

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
    OutcomeConflictError,
    OutcomeStore,
    Prediction,
    outcomes_db_path,
)

__all__ = [
    "AuditUnavailableError",
    "IngestResult",
    "Outcome",
    "OutcomeAudit",
    "OutcomeConflictError",
    "OutcomeService",
    "OutcomeSpec",
    "OutcomeStore",
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
