"""Components that need an optional extra: off, with one warning naming it, when it is missing.

``pip install infertrail`` instruments a service with telemetry, the audit log and cost; drift,
SLOs and outcomes need ``[monitoring]`` (NumPy, SciPy, scikit-learn), sealing the audit log into
Parquet and the compliance queries need ``[lake]`` (pyarrow, DuckDB, fsspec); RFC 3161
timestamps of the checkpoints need ``[timestamps]`` (rfc3161-client).
"""

from __future__ import annotations

import logging
from importlib import import_module
from types import ModuleType

__all__ = ["EXTRAS", "extra_for", "optional"]

_log = logging.getLogger("infertrail.runtime")

#: The optional extras, by the top-level modules each brings (``pip install infertrail[x]``).
EXTRAS: dict[str, frozenset[str]] = {
    "lake": frozenset({"pyarrow", "duckdb", "fsspec"}),
    "monitoring": frozenset({"numpy", "scipy", "sklearn", "grafana_foundation_sdk"}),
    "server": frozenset({"fastapi", "starlette", "uvicorn"}),
    "demo": frozenset({"joblib"}),
    "timestamps": frozenset({"rfc3161_client"}),
}


def extra_for(exc: ModuleNotFoundError) -> str | None:
    """The extra that would provide the module ``exc`` says is missing, if any."""
    top = (exc.name or "").partition(".")[0]
    return next((name for name, mods in EXTRAS.items() if top in mods), None)


def optional(feature: str, module: str) -> ModuleType | None:
    """``module``, or None with a warning naming the extra when that extra is not installed.

    Only a missing third-party module of an extra counts; any other import error is raised.
    """
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        extra = extra_for(exc)
        if extra is None:
            raise
        _log.warning(
            "%s is off: it needs infertrail[%s] (%s is not installed): "
            "pip install 'infertrail[%s]'",
            feature,
            extra,
            exc.name,
            extra,
        )
        return None
