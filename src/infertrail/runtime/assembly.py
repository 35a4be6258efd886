"""The one place a running infertrail service is assembled from :class:`Settings`, and stopped.

Start order (each step may use the ones before it; a failure stops what already started):

1. telemetry: the OpenTelemetry providers and exporters (made global unless opted out);
2. the :class:`~infertrail.monitor.Monitor`;
3. the audit trail (log, sealer, privacy stores): the Monitor's request-thread sink; then,
   with ``retention_enforce``, the retention task recording to it (shreds expired months' keys);
   with ``audit_witnesses``, the witness publisher (a thread sending the log's checkpoints to
   witnesses to cosign; never on the request path);
4. the compliance query service and its users, over the trail;
5. alerting: one engine for the alert rules and the SLOs' burn-rate rules;
6. the SLOs (a background sink), then one drift monitor per model with a reference profile
   (background sinks), then cost attribution, then the outcomes loop (background sinks).

Stop order (:meth:`Runtime.shutdown`, one deadline for everything, default 5 s): the compliance
service; the retention task (it appends to the audit log); the witness publisher (it reads the
log; a witness's answer may be in flight: capped like the network steps); the Monitor (the
audit trail first: a final signed checkpoint, then the lake seal; then the queue drained into
the background sinks, closed in reverse registration order: the outcomes loop, cost, the drift
monitors judging their open windows, the SLOs); alerting (delivering what those last windows
raised); telemetry last.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from infertrail.audit.receipts import Receipt, receipt_of, receipt_of_async
from infertrail.config import Settings
from infertrail.cost.attribution import CostAttribution
from infertrail.events import InferenceEvent, ModelInfo
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, NETWORK_STEP_S, Deadline, run_bounded
from infertrail.monitor import Monitor
from infertrail.retention.service import retention_service
from infertrail.retention.task import RetentionTask
from infertrail.runtime.alerts import Alerting
from infertrail.runtime.audit import AuditTrail
from infertrail.runtime.extras import optional
from infertrail.runtime.health import ComponentHealth, Health
from infertrail.slo.definitions import SLOSet
from infertrail.telemetry.setup import Telemetry

if TYPE_CHECKING:
    from infertrail.drift import DriftConfig
    from infertrail.drift.window import DriftMonitor
    from infertrail.genai import GenAI
    from infertrail.runtime.compliance import ComplianceAccess
    from infertrail.runtime.drift import ProfileBuilder, ProfileSource
    from infertrail.runtime.outcomes import OutcomeLoop
    from infertrail.runtime.slo import SLOService
    from infertrail.runtime.timestamps import TimestampTask
    from infertrail.runtime.witnesses import WitnessPublisher

__all__ = ["Runtime", "start"]

_log = logging.getLogger("infertrail.runtime")


P = ParamSpec("P")
R = TypeVar("R")


class Runtime:
    """A running infertrail service: telemetry, the Monitor and its sinks, and the services.

    Build one with :meth:`start` (or :func:`infertrail.instrument` for a web app); stop it with
    :meth:`shutdown` (also run at interpreter exit if nobody did). Components that are off in
    the settings are None.
    """

    def __init__(self, settings: Settings, models: Sequence[ModelInfo]) -> None:
        """Internal: use :meth:`start`."""
        self.settings = settings
        self.models: tuple[ModelInfo, ...] = tuple(models)
        self.telemetry: Telemetry | None = None
        self.monitor: Monitor | None = None
        self.audit: AuditTrail | None = None
        self.compliance: ComplianceAccess | None = None
        self.alerting: Alerting | None = None
        self.slo: SLOService | None = None
        self.drift: dict[str, DriftMonitor] = {}
        self.cost: CostAttribution | None = None
        self.outcomes: OutcomeLoop | None = None
        self.retention: RetentionTask | None = None
        self.witnesses: WitnessPublisher | None = None  # with audit_witnesses
        self.timestamps: TimestampTask | None = None  # RFC 3161 tokens, with audit_tsa_url
        self._stop_lock = threading.Lock()
        self._stopped = False

    # -- start -----------------------------------------------------------------------------
    @classmethod
    def start(
        cls,
        settings: Settings | None = None,
        models: Sequence[ModelInfo] = (),
        *,
        profiles: Mapping[str, ProfileSource] | None = None,
        profile_builders: Mapping[str, ProfileBuilder] | None = None,
        estimator_builders: Mapping[str, ProfileBuilder] | None = None,
        drift_config: DriftConfig | None = None,
    ) -> Runtime:
        """Start every component ``settings`` enable, for the served ``models``.

        ``profiles`` gives a model's drift reference (a loaded Profile or its file), else the
        one saved beside the model in ``<data_dir>/models/<name>/profile.json`` is used; a
        model without one is not drift-monitored (a warning says so). ``profile_builders``
        rebuild a missing or stale profile, ``estimator_builders`` a missing or stale CBPE
        estimator (``cbpe.json``; the served demo models have both). Fails clearly,
        having stopped what it started, when a file is bad, the audit log is held by another
        process, or a receiver's secret is missing.
        """
        settings = settings or Settings()
        names = [m.name for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        runtime = cls(settings, models)
        try:
            runtime._start(profiles, profile_builders, estimator_builders, drift_config)
        except BaseException:
            runtime.shutdown()
            raise
        # A batch job that never calls shutdown() still leaves a final signed checkpoint.
        atexit.register(_shutdown_at_exit, weakref.ref(runtime))
        return runtime

    def _start(
        self,
        profiles: Mapping[str, ProfileSource] | None,
        builders: Mapping[str, ProfileBuilder] | None,
        estimator_builders: Mapping[str, ProfileBuilder] | None,
        drift_config: DriftConfig | None,
    ) -> None:
        s = self.settings
        s.ensure_dirs()
        self.telemetry = telemetry = Telemetry(s)
        if s.set_global_providers:
            telemetry.install_globals()
        self.monitor = monitor = Monitor(s, telemetry=telemetry)
        meter = telemetry.meter
        if s.audit_enabled:
            self.audit = AuditTrail.open(s)
            # A sink at once: any later failure of the start closes the log through the Monitor.
            monitor.add_sink(self.audit, on_request_thread=True)
            if s.retention_enforce:
                service = retention_service(s, self.audit.keyring, self.audit.privacy)
                self.retention = RetentionTask(service, s.retention_interval_s).start()
            if s.audit_tsa_url is not None:
                stamping = optional("RFC 3161 timestamps", "infertrail.runtime.timestamps")
                if stamping is not None:
                    task = stamping.TimestampTask.open(s, self.audit.log, meter)
                    self.timestamps = task.start()
            compliance = optional("the compliance query service", "infertrail.runtime.compliance")
            if compliance is not None:
                self.compliance = compliance.ComplianceAccess.open(s, self.audit)
            if s.audit_witnesses:
                # Imported only when configured (its HTTP client).
                from infertrail.runtime.witnesses import WitnessPublisher

                self.witnesses = WitnessPublisher.open(s, self.audit.log, meter).start()
        self.alerting = Alerting.open(s, meter)
        engine = None if self.alerting is None else self.alerting.engine
        drift = (
            optional("drift monitoring", "infertrail.runtime.drift") if s.drift_enabled else None
        )
        if drift is not None:
            self.drift = drift.open_drift_monitors(
                s,
                self.models,
                meter,
                profiles=profiles,
                builders=builders,
                estimator_builders=estimator_builders,
                engine=engine,
                config=drift_config,
            )
        slos = None if self.alerting is None else self.alerting.slos
        if self.alerting is not None and slos is None:
            # Rules but no SLO file: the evaluator still runs for the business signals
            # (confidence drops, the generations' empty/refused/truncated rates).
            slos = SLOSet(slos=(), source="<no slo_file: business signals only>")
        slo = None if slos is None else optional("SLO evaluation", "infertrail.runtime.slo")
        if slos is not None and slo is not None:
            # Registered before the drift monitors, so closed after them: the last windows'
            # OOD counts reach the SLO counter before it saves them.
            self.slo = slo.open_slos(
                slos,
                engine,
                meter,
                counts_path=s.slo_counts_path,
                drift_monitors=self.drift.values(),
            )
            monitor.add_sink(self.slo)
        for drift_monitor in self.drift.values():
            monitor.add_sink(drift_monitor)
        if s.cost_enabled:
            self.cost = CostAttribution.open(s, meter=meter)
            monitor.add_sink(self.cost)
        outcomes = (
            optional("outcomes", "infertrail.runtime.outcomes") if s.outcomes_enabled else None
        )
        if outcomes is not None:
            self.outcomes = outcomes.OutcomeLoop.open(
                s, meter, audit=self.audit, engine=engine, hand_over_events=monitor.flush_events
            )
            monitor.add_sink(self.outcomes)

    # -- use -------------------------------------------------------------------------------
    def _running_monitor(self) -> Monitor:
        if self.monitor is None or self._stopped:
            raise RuntimeError("this infertrail runtime is not running (shut down)")
        return self.monitor

    def model(self, name: str) -> ModelInfo:
        """The served model named ``name``; KeyError naming the served ones otherwise."""
        for info in self.models:
            if info.name == name:
                return info
        raise KeyError(f"model {name!r} is not served; served: {[m.name for m in self.models]}")

    def observe(
        self, model: ModelInfo, inputs: Any, **kwargs: Any
    ) -> AbstractContextManager[InferenceEvent]:
        """Wrap one inference (:meth:`infertrail.monitor.Monitor.observe`)."""
        return self._running_monitor().observe(model, inputs, **kwargs)

    def instrument(
        self, model: ModelInfo, **kwargs: Any
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Decorate a predict function (:meth:`infertrail.monitor.Monitor.instrument`)."""
        return self._running_monitor().instrument(model, **kwargs)

    def genai(self, provider: str, **kwargs: Any) -> GenAI:
        """A :class:`~infertrail.genai.GenAI` recording generations through this runtime.

        Opt-in message content is redacted with the audit trail's pseudonyms (the subject id
        becomes its pseudonym) and cut at ``genai_content_max_chars``; ``kwargs`` go to GenAI
        (``server_address``, ``span_kind``, ``count_tokens``, ...).
        """
        from infertrail.genai import GenAI

        if self.audit is not None:
            kwargs.setdefault("pseudonymize", self.audit.pseudonym)
        kwargs.setdefault("content_max_chars", self.settings.genai_content_max_chars)
        return GenAI(self._running_monitor(), provider=provider, **kwargs)

    def audit_receipt(
        self, event: InferenceEvent, timeout_s: float | None = None
    ) -> Receipt | None:
        """Wait until ``event``'s audit record is durable; its Receipt (seq, leaf hash).

        The receipt also carries the checkpoint the log signed for the record's group commit:
        ``receipt.to_dict()`` is the document to hand the decision's holder (docs/receipts.md),
        checkable with only the log's public key (``infertrail audit check-receipt``).
        None when the audit trail is off. Raises AuditUnavailableError if the record could not
        be written (the decision must then not be given), AuditRefusedError (e.g. the subject
        was erased), TimeoutError after ``timeout_s``.
        """
        return receipt_of(event.audit, timeout_s)

    async def audit_receipt_async(self, event: InferenceEvent) -> Receipt | None:
        """:meth:`audit_receipt` for an async handler (does not block the event loop)."""
        return await receipt_of_async(event.audit)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Hand every queued event to the sinks, flush them, export telemetry now."""
        return self._running_monitor().flush(timeout_s)

    def health(self) -> Health:
        """Whether this service can give decisions now, per component (readiness).

        Not after shutdown; with the audit trail on, not while its log is down (reopening after
        a write error), its last lake seal failed, or the storage of the log, the lake or the
        privacy databases is not writable or has less than ``ready_min_free_bytes`` free.
        Liveness is another question: the process answering at all. Writes nothing.
        """
        if not self.running:
            return Health((ComponentHealth("runtime", False, "shut down"),))
        if self.audit is None:
            return Health(())
        components = self.audit.health(self.settings.ready_min_free_bytes)
        if self.witnesses is not None:  # shown, never required: decisions do not wait for it
            components.append(self.witnesses.health())
        if self.timestamps is not None:  # shown, never required: decisions do not wait for it
            components.append(self.timestamps.health())
        return Health(tuple(components))

    # -- stop ------------------------------------------------------------------------------
    def shutdown(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop everything within ``timeout_s`` (see the module docstring). Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = Deadline(timeout_s)
        if self.compliance is not None:
            run_bounded("compliance service", self.compliance.close, deadline)
        if self.retention is not None:  # before the audit trail: it records to its log
            run_bounded("retention task", self.retention.close, deadline)
        if self.witnesses is not None:  # reads the log; a witness's answer may be in flight
            run_bounded("witness publisher", self.witnesses.close, deadline.capped(NETWORK_STEP_S))
        if self.timestamps is not None:  # reads the log; a TSA request may be in flight
            run_bounded("timestamp task", self.timestamps.close, deadline.capped(NETWORK_STEP_S))
        if self.monitor is not None:  # closes the audit trail first, then the other sinks
            self.monitor.shutdown(deadline.remaining())
        if self.alerting is not None:
            run_bounded("alert notifiers", self.alerting.close, deadline.capped(NETWORK_STEP_S))
        if self.telemetry is not None:
            self.telemetry.shutdown(deadline.capped(NETWORK_STEP_S).remaining())

    @property
    def running(self) -> bool:
        """True from start until shutdown."""
        return self.monitor is not None and not self._stopped

    def __enter__(self) -> Runtime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        models = ", ".join(m.name for m in self.models)
        return f"<Runtime {self.settings.service_name!r} [{models}] {state}>"


def _shutdown_at_exit(ref: weakref.ref[Runtime]) -> None:
    runtime = ref()
    if runtime is not None and runtime.running:
        runtime.shutdown()


def start(
    settings: Settings | None = None, models: Sequence[ModelInfo] = (), **options: Any
) -> Runtime:
    """Start infertrail for a process without a web framework (a batch scoring job, a worker).

    The same as :meth:`Runtime.start`; use the result as a context manager, or call its
    ``shutdown()``. Example::

        with infertrail.start(Settings(service_name="scoring"), models=[model]) as rt:
            for row in rows:
                with rt.observe(model, row, subject=row["customer_id"]) as ev:
                    ev.score = clf.predict_proba([features(row)])[0, 1]
                rt.audit_receipt(ev)  # durable before the score is used
    """
    return Runtime.start(settings, models, **options)
