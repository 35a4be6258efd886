"""Drift monitoring and drift alerting for a running service, built from :class:`Settings`.

:func:`start_drift_monitoring` loads each served model's reference profile (checked against the
model's sha256), registers one :class:`DriftMonitor` per model as a background ``Monitor`` sink,
publishes every report as drift gauges (``/metrics``) and, when ``alert_rules_file`` is set,
feeds each closed window to one :class:`AlertEngine` whose notifications go out through a
:class:`NotifierDispatch`. Nothing here runs on the request thread.

A model whose profile is missing or belongs to an older artifact gets it rebuilt at start-up,
with a warning, when the caller hands over a builder for it (the served demo models' are in
``infertrail.models.PROFILE_BUILDERS``); otherwise that is an error naming the file.
"""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from infertrail.alerting import AlertEngine, NotifierDispatch, load_rules
from infertrail.config import Settings
from infertrail.drift import (
    DriftConfig,
    DriftMetrics,
    DriftMonitor,
    Profile,
    ProfileError,
    load_profile,
    profile_path,
)
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.runtime.alert_sources import drift_listener
from infertrail.runtime.slo import SLOService, attach_slos
from infertrail.slo.alerts import with_slo_rules
from infertrail.slo.definitions import load_slos

log = logging.getLogger("infertrail.drift")

#: Rebuilds a model's reference profile under a models root; returns the profile's path.
ProfileBuilder = Callable[[Path], Path]


def _recorded_sha256(path: Path) -> str | None:
    """The model sha256 a profile file names, or None if it cannot be read."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        sha = meta["model"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return sha if isinstance(sha, str) else None


def load_reference(
    models_root: Path, info: ModelInfo, builders: Mapping[str, ProfileBuilder] | None = None
) -> Profile:
    """The profile of the served artifact ``info``; a demo model's is rebuilt if missing or stale.

    A profile that exists for this artifact but does not load (damaged, another format version)
    is an error: silently replacing it would hide the damage.
    """
    path = profile_path(models_root, info.name)
    stale = path.is_file() and _recorded_sha256(path) not in (None, info.sha256)
    if path.is_file() and not stale:
        return load_profile(path, expected_sha256=info.sha256)
    rebuild = (builders or {}).get(info.name)
    if rebuild is None:
        why = "belongs to another artifact" if stale else "is missing"
        raise ProfileError(
            f"profile {path} {why} and model {info.name!r} has no baseline builder; build it "
            "with build_tabular_profile/build_image_profile/build_text_profile and save it there"
        )
    log.warning(
        "drift profile %s %s; rebuilding it from the training data",
        path,
        "belongs to an older artifact" if stale else "is missing",
    )
    rebuild(models_root)
    return load_profile(path, expected_sha256=info.sha256)


# -- the wiring -------------------------------------------------------------------------------
@dataclass
class DriftWiring:
    """The drift monitors of the served models, their gauges, and the alerting behind them."""

    monitor: Monitor
    drift_monitors: dict[str, DriftMonitor]
    metrics: DriftMetrics
    engine: AlertEngine | None = None
    dispatch: NotifierDispatch | None = None
    slo: SLOService | None = None
    _closed: bool = field(default=False, repr=False)

    def close(self, timeout_s: float = 10.0) -> None:
        """Judge what is queued and the open windows, deliver notifications, stop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # Events still queued in the Monitor belong to the current windows: let them arrive.
        self.monitor.flush(timeout_s)
        for drift_monitor in self.drift_monitors.values():
            drift_monitor.close(timeout_s)
        if self.slo is not None:
            self.slo.close()
        if self.dispatch is not None:
            self.dispatch.close(timeout_s)


def _seed(model_name: str) -> int:
    """A stable per-model sampling seed, so sampling is reproducible across restarts."""
    return zlib.crc32(model_name.encode())


def start_drift_monitoring(
    settings: Settings,
    monitor: Monitor,
    models: Iterable[ModelInfo],
    *,
    config: DriftConfig | None = None,
    builders: Mapping[str, ProfileBuilder] | None = None,
) -> DriftWiring:
    """Start drift monitoring of ``models``, the SLOs of ``settings.slo_file``, and alerting.

    One alert engine holds the rules of ``alert_rules_file`` and the SLOs' burn-rate rules.
    Fails before registering anything when a profile, the rules or the SLO file is bad, or a
    receiver's secret is missing from the environment. The caller decides whether drift
    monitoring runs at all (``settings.drift_enabled``).
    """
    profiles = [load_reference(settings.models_dir, info, builders) for info in models]
    rules = None if settings.alert_rules_file is None else load_rules(settings.alert_rules_file)
    slos = None if settings.slo_file is None else load_slos(settings.slo_file)
    if slos is not None:
        rules = with_slo_rules(rules, slos)
    meter = monitor.telemetry.meter
    dispatch = None if rules is None else NotifierDispatch.from_rules(rules, meter=meter)
    drift_monitors: dict[str, DriftMonitor] = {}
    try:
        engine = None if rules is None else AlertEngine(rules, dispatch, settings.alert_state_path)
        for profile in profiles:
            drift_monitors[profile.model_name] = DriftMonitor(
                profile,
                config,
                window_size=settings.drift_window_size,
                window_seconds=settings.drift_window_seconds,
                sample_rate=settings.drift_sample_rate,
                seed=_seed(profile.model_name),
            )
    except BaseException:
        for built in drift_monitors.values():
            built.close(0.0)
        if dispatch is not None:
            dispatch.close(0.0)
        raise
    metrics = DriftMetrics(meter)
    for drift_monitor in drift_monitors.values():
        drift_monitor.add_listener(metrics.record)
        if engine is not None:
            drift_monitor.add_listener(drift_listener(engine))
        monitor.add_sink(drift_monitor)
    slo = None
    if slos is not None:
        slo = attach_slos(
            monitor,
            slos,
            engine,
            counts_path=settings.slo_counts_path,
            drift_monitors=drift_monitors.values(),
        )
    return DriftWiring(monitor, drift_monitors, metrics, engine, dispatch, slo)
