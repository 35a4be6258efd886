"""Service level objectives: SLIs counted from inference events, burn-rate alerts, budgets.

Load definitions with ``load_slos`` (native or OpenSLO v1), count events with an
``SLICounter`` registered as a Monitor sink, and evaluate them with an ``SLOEvaluator``, whose
timer feeds the alert engine (build its rules with ``with_slo_rules``); the runtime
(``runtime/slo.py``) does the wiring for a service. ``prometheus_slo_rules`` writes the same
SLOs as Sloth-shaped Prometheus rules. See docs/slo.md.
"""

from typing import TYPE_CHECKING

from infertrail._lazy import lazy_attributes
from infertrail.slo.alerts import burn_signal, slo_alert_rules, with_slo_rules
from infertrail.slo.burnrate import (
    RATIO_WINDOWS_S,
    WORKBOOK_POLICY,
    BurnRateAlert,
    SLOStatus,
    WindowCounts,
    evaluate_slo,
)
from infertrail.slo.definitions import SLO, SLOError, SLOSet, load_slos, parse_slos
from infertrail.slo.evaluator import SLOEvaluator
from infertrail.slo.export import prometheus_slo_rules
from infertrail.slo.openslo import parse_openslo
from infertrail.slo.sli import EventCounts, SLICounter

if TYPE_CHECKING:
    from infertrail.slo.business import (
        ConfidenceReference,
        ConfidenceWindow,
        histogram_quantile,
    )

# The business signals need NumPy (the [monitoring] extra): imported when used.
__getattr__ = lazy_attributes(
    __name__,
    dict.fromkeys(
        ("ConfidenceReference", "ConfidenceWindow", "histogram_quantile"),
        "infertrail.slo.business",
    ),
)

__all__ = [
    "RATIO_WINDOWS_S",
    "SLO",
    "WORKBOOK_POLICY",
    "BurnRateAlert",
    "ConfidenceReference",
    "ConfidenceWindow",
    "EventCounts",
    "SLICounter",
    "SLOError",
    "SLOEvaluator",
    "SLOSet",
    "SLOStatus",
    "WindowCounts",
    "burn_signal",
    "evaluate_slo",
    "histogram_quantile",
    "load_slos",
    "parse_openslo",
    "parse_slos",
    "prometheus_slo_rules",
    "slo_alert_rules",
    "with_slo_rules",
]
