"""Alerting: rules on business-impact signals, their state machine, notifiers and export.

Load rules with ``load_rules``, build a ``NotifierDispatch`` for their receivers and an
``AlertEngine`` over both; call ``AlertEngine.evaluate`` once per window. See docs/alerting.md.
"""

from typing import TYPE_CHECKING

from infertrail._lazy import lazy_attributes
from infertrail.alerting.delivery import NotifierDispatch, ReceiverStats, RetryPolicy
from infertrail.alerting.engine import AlertEngine
from infertrail.alerting.rules import AlertRule, RuleError, RuleSet, load_rules, parse_rules
from infertrail.alerting.signals import SIGNALS
from infertrail.alerting.transitions import Delivery, Dispatch, Transition

if TYPE_CHECKING:
    from infertrail.alerting.export import ExportError, grafana_dashboard, prometheus_rules

# The exports need the Grafana SDK (the [monitoring] extra): imported when used.
__getattr__ = lazy_attributes(
    __name__,
    dict.fromkeys(
        ("ExportError", "grafana_dashboard", "prometheus_rules"), "infertrail.alerting.export"
    ),
)

__all__ = [
    "SIGNALS",
    "AlertEngine",
    "AlertRule",
    "Delivery",
    "Dispatch",
    "ExportError",
    "NotifierDispatch",
    "ReceiverStats",
    "RetryPolicy",
    "RuleError",
    "RuleSet",
    "Transition",
    "grafana_dashboard",
    "load_rules",
    "parse_rules",
    "prometheus_rules",
]
