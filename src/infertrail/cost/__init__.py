"""Cost attribution per model and team: a versioned price table, a Monitor sink, a report.

``CostAttribution.open(settings, meter=...)`` is the sink (``monitor.add_sink(cost)``);
``cost_report`` reads what it wrote; ``infertrail cost report`` prints it. See docs/cost.md.
"""

from infertrail.cost.attribution import CostAttribution, cost_db_path
from infertrail.cost.prices import (
    OPENCOST_DEFAULTS,
    CostBreakdown,
    ModelPrice,
    PriceError,
    PriceTable,
    PriceVersion,
    default_price_table,
    load_price_table,
    parse_price_table,
)
from infertrail.cost.report import CostReport, CostRow, cost_report, render

__all__ = [
    "OPENCOST_DEFAULTS",
    "CostAttribution",
    "CostBreakdown",
    "CostReport",
    "CostRow",
    "ModelPrice",
    "PriceError",
    "PriceTable",
    "PriceVersion",
    "cost_db_path",
    "cost_report",
    "default_price_table",
    "load_price_table",
    "parse_price_table",
    "render",
]
