"""Label-free performance estimation: what a model's accuracy is before its outcomes arrive.

- :func:`fit_cbpe` / :class:`CbpeModel` (confidence-based performance estimation) for binary and
  multiclass classifiers: calibrated on a labelled reference, it estimates each window's
  confusion matrix, ROC AUC, accuracy, F1, precision and recall with a sampling-error band and
  an alert against reference thresholds (NannyML 0.13's definitions, checked against it).
- :func:`fit_dle` / :class:`DleModel` (direct loss estimation) for regression models.
- :class:`CbpeAnalyzer`: CBPE as a drift-window analyzer, giving the ``estimated.*`` signals.

docs/estimation.md explains the premise (P(y | score) unchanged) and how to fit your own.
"""

from infertrail.estimation.analyzer import CbpeAnalyzer
from infertrail.estimation.calibration import IsotonicMap
from infertrail.estimation.cbpe import CbpeModel, fit_cbpe
from infertrail.estimation.cbpe_io import CBPE_FILE, CbpeFileError, cbpe_path
from infertrail.estimation.dle import REGRESSION_METRICS, DleModel, fit_dle
from infertrail.estimation.estimate import Estimate, MetricEstimate, MetricReference
from infertrail.estimation.metrics import CLASSIFICATION_METRICS

__all__ = [
    "CBPE_FILE",
    "CLASSIFICATION_METRICS",
    "REGRESSION_METRICS",
    "CbpeAnalyzer",
    "CbpeFileError",
    "CbpeModel",
    "DleModel",
    "Estimate",
    "IsotonicMap",
    "MetricEstimate",
    "MetricReference",
    "cbpe_path",
    "fit_cbpe",
    "fit_dle",
]
