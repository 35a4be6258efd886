"""Builds the OpenTelemetry providers, exporters and instruments from :class:`Settings`.

Files (OTLP/JSON lines under ``<data_dir>/telemetry``, rotated by size and age within a bounded
total: :class:`~infertrail.telemetry.files.RotationPolicy`) are the default; OTLP (HTTP or gRPC) is
added for each signal that has an endpoint (:mod:`infertrail.otlp`); a Prometheus
registry backs the service's ``/metrics``. Every exporter is wrapped so that an outage is counted
and logged, never raised into a request, and flushing and shutting down are bounded in time even
when a collector never answers. docs/telemetry.md describes the settings.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import orjson
from opentelemetry import _logs as logs_api
from opentelemetry import context as otel_context
from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api

# The API's default global providers; private classes, but isinstance is the only way to tell
# "nobody set one yet" from a provider the application installed.
from opentelemetry._logs._internal import ProxyLoggerProvider
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics._internal import _ProxyMeterProvider
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricReader,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import CollectorRegistry

from infertrail.config import Settings
from infertrail.otlp import (
    OtlpTarget,
    Signal,
    log_exporter,
    metric_exporter,
    resolve_otlp,
    span_exporter,
)
from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import (
    LOGS_FILE,
    METRICS_FILE,
    TRACES_FILE,
    OtlpJsonLogExporter,
    OtlpJsonMetricExporter,
    OtlpJsonSpanExporter,
    RotationPolicy,
    _JsonLinesFile,
)
from infertrail.telemetry.histograms import HistogramSet
from infertrail.telemetry.otlp_json import LogEntry, log_entries_request
from infertrail.telemetry.spans import CompactTracer, SpanPump

_log = logging.getLogger("infertrail.telemetry")

INFERENCE_LOG_FILE = "inference.log.jsonl"
SCOPE = c.SCOPE
# Bound on one OTLP export, retries included: a slow collector delays only its own batches.
OTLP_EXPORT_TIMEOUT_S = 5.0

_SAMPLERS: dict[str, Callable[[float], sampling.Sampler]] = {
    "always_on": lambda _: sampling.ALWAYS_ON,
    "always_off": lambda _: sampling.ALWAYS_OFF,
    "traceidratio": sampling.TraceIdRatioBased,
    "parentbased_always_on": lambda _: sampling.ParentBased(sampling.ALWAYS_ON),
    "parentbased_always_off": lambda _: sampling.ParentBased(sampling.ALWAYS_OFF),
    "parentbased_traceidratio": lambda r: sampling.ParentBased(sampling.TraceIdRatioBased(r)),
}


def make_sampler(name: str, arg: float) -> sampling.Sampler:
    """The sampler named as in ``OTEL_TRACES_SAMPLER``."""
    try:
        factory = _SAMPLERS[name]
    except KeyError:
        raise ValueError(
            f"unknown traces sampler {name!r}; valid: {', '.join(sorted(_SAMPLERS))}"
        ) from None
    return factory(arg)


class ExportFailures:
    """Counts exporter failures per signal and backend, and logs them at most every 30 s."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self._last_log = 0.0

    def record(self, signal: str, backend: str, detail: str) -> None:
        with self._lock:
            key = (signal, backend)
            self.counts[key] = self.counts.get(key, 0) + 1
            now = time.monotonic()
            if now - self._last_log < 30.0:
                return
            self._last_log = now
        _log.warning("telemetry export failed (%s to %s): %s", signal, backend, detail)

    def observe(self, _options: metrics_api.CallbackOptions) -> list[metrics_api.Observation]:
        with self._lock:
            items = list(self.counts.items())
        return [
            metrics_api.Observation(n, {c.EXPORT_SIGNAL: signal, c.EXPORT_BACKEND: backend})
            for (signal, backend), n in items
        ]


class _RateLimitFilter(logging.Filter):
    """Lets one record through per interval: the OTLP exporters log every failed attempt, which
    floods the log during a collector outage (ExportFailures counts every one of them)."""

    def __init__(self, interval_s: float = 30.0) -> None:
        super().__init__()
        self._interval = interval_s
        self._last = -interval_s

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval:
            return False
        self._last = now
        return True


# Filters apply only at the logger a record is created on, so each exporter module gets one.
for _name in (
    "opentelemetry.exporter.otlp.proto.http._common",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, _RateLimitFilter) for f in _logger.filters):
        _logger.addFilter(_RateLimitFilter())


class _GuardedSpanExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, backend: str, failures: ExportFailures) -> None:
        self._inner, self._backend, self._failures = inner, backend, failures

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception as exc:  # an exporter outage must never surface in a request
            result, detail = SpanExportResult.FAILURE, repr(exc)
        else:
            detail = "exporter returned FAILURE"
        if result is not SpanExportResult.SUCCESS:
            self._failures.record("traces", self._backend, detail)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _GuardedLogExporter(LogRecordExporter):
    def __init__(self, inner: LogRecordExporter, backend: str, failures: ExportFailures) -> None:
        self._inner, self._backend, self._failures = inner, backend, failures

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        try:
            result = self._inner.export(batch)
        except Exception as exc:
            result, detail = LogRecordExportResult.FAILURE, repr(exc)
        else:
            detail = "exporter returned FAILURE"
        if result is not LogRecordExportResult.SUCCESS:
            self._failures.record("logs", self._backend, detail)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _GuardedMetricExporter(MetricExporter):
    def __init__(self, inner: MetricExporter, backend: str, failures: ExportFailures) -> None:
        super().__init__(inner._preferred_temporality, inner._preferred_aggregation)
        self._inner, self._backend, self._failures = inner, backend, failures

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        try:
            result = self._inner.export(metrics_data, timeout_millis=timeout_millis)
        except Exception as exc:
            result, detail = MetricExportResult.FAILURE, repr(exc)
        else:
            detail = "exporter returned FAILURE"
        if result is not MetricExportResult.SUCCESS:
            self._failures.record("metrics", self._backend, detail)
        return result

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis)


class _FanOutLogExporter(LogRecordExporter):
    """Hands one batch to several exporters: one batch processor (queue, thread, per-record
    hand-off) serves all local files instead of one each."""

    def __init__(self, exporters: Sequence[LogRecordExporter]) -> None:
        self._exporters = list(exporters)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        results = [e.export(batch) for e in self._exporters]
        ok = all(r is LogRecordExportResult.SUCCESS for r in results)
        return LogRecordExportResult.SUCCESS if ok else LogRecordExportResult.FAILURE

    def shutdown(self) -> None:
        for e in self._exporters:
            e.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return all(e.force_flush(timeout_millis) for e in self._exporters)


class InferenceLogExporter(LogRecordExporter):
    """Writes each inference log record's body as one flat JSON line (for humans, grep, Loki)."""

    def __init__(self, path: Any, rotation: RotationPolicy | None = None) -> None:
        self._file = path if isinstance(path, _JsonLinesFile) else _JsonLinesFile(path, rotation)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        lines = [
            orjson.dumps(r.log_record.body, default=str, option=orjson.OPT_APPEND_NEWLINE)
            for r in batch
            if isinstance(r.log_record.body, dict)
        ]
        if lines:
            self._file.write(b"".join(lines).decode())
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


AttributeKey = tuple[tuple[str, str | bool | int | float], ...]


class RunningCounts:
    """Cumulative counts per attribute set, read by an observable counter at each collection.

    Counting an event is a dict update (~0.3 us); a synchronous SDK counter ``add`` costs
    ~10 us per metric reader (attribute validation, hashing, aggregation lock), per event.
    Keys are tuples of (attribute, value) pairs, so callers can cache them per series.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[AttributeKey, int] = {}

    def add(self, key: AttributeKey, n: int = 1) -> None:
        """Add ``n`` to the series ``key``."""
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def observe(self, _options: metrics_api.CallbackOptions) -> list[metrics_api.Observation]:
        """The observable counter's callback: every series and its total so far."""
        with self._lock:
            items = list(self._counts.items())
        return [metrics_api.Observation(n, dict(key)) for key, n in items]


class Histogram(Protocol):
    """What the hot path records a histogram measurement into (telemetry/histograms.py)."""

    def record(
        self,
        value: float,
        key: AttributeKey,
        trace_id: int = 0,
        span_id: int = 0,
        sampled: bool = False,
        time_ns: int = 0,
    ) -> None:
        """Record ``value`` in the series ``key``, made in the span ``trace_id``/``span_id``."""


class _SdkHistogram:
    """An SDK synchronous histogram behind the :class:`Histogram` interface: the fallback when
    a metric reader wants what batched histograms do not make (exponential buckets)."""

    def __init__(self, inner: metrics_api.Histogram) -> None:
        self._inner = inner

    def record(
        self,
        value: float,
        key: AttributeKey,
        trace_id: int = 0,
        span_id: int = 0,
        sampled: bool = False,
        time_ns: int = 0,
    ) -> None:
        context = _NO_SPAN
        if span_id:
            flags = trace_api.TraceFlags(trace_api.TraceFlags.SAMPLED if sampled else 0)
            sc = trace_api.SpanContext(trace_id, span_id, is_remote=False, trace_flags=flags)
            context = trace_api.set_span_in_context(trace_api.NonRecordingSpan(sc))
        self._inner.record(value, dict(key), context=context)


# An empty context: no span, so the trace-based exemplar filter records no exemplar.
_NO_SPAN = otel_context.Context()


@dataclass
class Instruments:
    """The metric instruments every inference records into.

    Histograms are batched (telemetry/histograms.py: a record is an append, folded into the
    readers' collections; exemplars point at the measurement's span); the counters are
    observable over :class:`RunningCounts`.
    """

    duration: Histogram
    confidence: Histogram
    predictions: RunningCounts
    errors: RunningCounts
    input_size: Histogram
    # GenAI (the pinned conventions' histograms, infertrail's outcome counter)
    genai_duration: Histogram
    genai_tokens: Histogram
    genai_ttft: Histogram
    genai_tpot: Histogram
    genai_outcomes: RunningCounts
    # Events whose attribute value was folded into "other" (monitor.py's cardinality guard)
    attribute_overflow: RunningCounts
    # The HTTP server layer's request duration (telemetry/httpserver.py)
    http_duration: Histogram


def _logged(what: str, fn: Callable[[], Any]) -> Callable[[], bool]:
    """``fn`` as a thread target: an exception is logged (a thread has no caller to raise to)
    and the result becomes True unless ``fn`` returned False or raised."""

    def run() -> bool:
        try:
            return fn() is not False
        except Exception:
            _log.exception("telemetry %s failed", what)
            return False

    return run


class _Flusher:
    """Runs one signal's flush in a daemon thread on request, so that a caller can stop waiting
    at its deadline: an export blocked on a collector that never answers must not hold it up.

    Requests made while a flush runs are served together by the next one, which starts after it
    ends, so a stuck collector costs one thread per signal, not one per request.
    """

    def __init__(self, signal: Signal, flush: Callable[[int], Any]) -> None:
        self.signal = signal
        self._flush = flush
        self._cond = threading.Condition()
        self._requested = 0  # generation of the latest request
        self._finished = 0  # generation served by the latest flush that ended
        self._ok = True  # that flush's result
        self._timeout_millis = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def request(self, timeout_millis: int) -> int:
        """Ask for a flush; returns the generation to :meth:`wait` for."""
        with self._cond:
            self._requested += 1
            self._timeout_millis = timeout_millis
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"infertrail-flush-{self.signal}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()
            return self._requested

    def wait(self, generation: int, deadline: float) -> bool | None:
        """Whether a flush started after request ``generation`` succeeded; None if none ended by
        ``deadline`` (a ``time.monotonic()`` value)."""
        with self._cond:
            while self._finished < generation:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._ok

    def close(self) -> None:
        """Let the thread end once it is idle; later requests are never served."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._finished == self._requested and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                generation, timeout_millis = self._requested, self._timeout_millis
            ok = _logged(f"{self.signal} flush", partial(self._flush, timeout_millis))()
            with self._cond:
                self._finished, self._ok = generation, ok
                self._cond.notify_all()


def _install_global(
    signal: Signal,
    ours: object,
    get: Callable[[], object],
    set_: Callable[[Any], None],
    default: type,
) -> bool:
    """Make ``ours`` the global provider of ``signal`` if the global is still the API's
    default (``default``); True if ours is the global afterwards."""
    current = get()
    if current is ours:
        return True
    if isinstance(current, default):
        set_(ours)
        current = get()  # another thread may have set one first: the API keeps the first
        if current is ours:
            return True
    # Usually the application's; in a process that builds several Telemetry objects (tests),
    # possibly an earlier one's: the message does not guess which.
    _log.info(
        "OpenTelemetry %s: keeping the global provider already set (%s.%s); telemetry made "
        "through the global API goes there, infertrail's through infertrail's own provider",
        signal,
        type(current).__module__,
        type(current).__qualname__,
    )
    return False


class Telemetry:
    """Owns the tracer, meter and logger providers of one process (or one test).

    The providers are not registered for shutdown at exit: the owner calls :meth:`shutdown`,
    which is bounded in time (the SDK's own exit hook would wait on a stuck collector).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        self.settings = settings
        self.failures = ExportFailures()
        self.resource = Resource.create(
            {
                c.SERVICE_NAME: settings.service_name,
                c.SERVICE_VERSION: settings.service_version,
                c.DEPLOYMENT_ENVIRONMENT_NAME: settings.deployment_environment,
                c.TEAM: settings.team,
            }
        )
        tdir = settings.telemetry_dir
        # One policy for the directory's files: their total is bounded together.
        rotation = RotationPolicy.of_megabytes(
            settings.telemetry_file_max_mb,
            settings.telemetry_file_max_age_h,
            settings.telemetry_files_max_total_mb,
        )
        self.otlp_targets: dict[Signal, OtlpTarget] = resolve_otlp(settings)
        # Built before any provider starts a thread, so a missing gRPC extra leaks nothing.
        otlp = self.otlp_targets
        timeout = OTLP_EXPORT_TIMEOUT_S
        otlp_spans = span_exporter(otlp["traces"], timeout) if "traces" in otlp else None
        otlp_metrics = metric_exporter(otlp["metrics"], timeout) if "metrics" in otlp else None
        otlp_logs = log_exporter(otlp["logs"], timeout) if "logs" in otlp else None

        self.tracer_provider = TracerProvider(
            resource=self.resource,
            sampler=make_sampler(settings.traces_sampler, settings.traces_sampler_arg),
            shutdown_on_exit=False,
        )
        # infertrail's own spans (the HTTP server span, the inference span) are compact spans,
        # built into the SDK's in batches by the pump (telemetry/spans.py); spans made through
        # the provider (the application's own, other instrumentations') are the SDK's. The
        # pump comes first, so a flush of the provider hands its spans on before the exports.
        self._scope = InstrumentationScope(SCOPE, settings.service_version)
        self.span_pump = SpanPump(self.tracer_provider, self._scope)
        span_exps: list[tuple[SpanExporter, str]] = [(e, "custom") for e in span_exporters]
        if settings.telemetry_files:
            span_exps.append((OtlpJsonSpanExporter(tdir / TRACES_FILE, rotation), "file"))
        if otlp_spans is not None:
            span_exps.append((otlp_spans, "otlp"))
        for exp, backend in span_exps:
            self.tracer_provider.add_span_processor(
                BatchSpanProcessor(
                    _GuardedSpanExporter(exp, backend, self.failures), schedule_delay_millis=1000
                )
            )

        self.prometheus_registry = CollectorRegistry(auto_describe=True)
        readers: list[MetricReader] = [
            *metric_readers,
            PrometheusMetricReader(registry=self.prometheus_registry),
        ]
        interval = settings.metric_export_interval_ms
        if settings.telemetry_files:
            file_exp = OtlpJsonMetricExporter(tdir / METRICS_FILE, rotation=rotation)
            readers.append(
                PeriodicExportingMetricReader(
                    _GuardedMetricExporter(file_exp, "file", self.failures),
                    export_interval_millis=interval,
                )
            )
        if otlp_metrics is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    _GuardedMetricExporter(otlp_metrics, "otlp", self.failures),
                    export_interval_millis=interval,
                )
            )
        self.meter_provider = MeterProvider(
            resource=self.resource, metric_readers=readers, shutdown_on_exit=False
        )
        # Only push readers are flushed: a collect() on the Prometheus reader would queue a
        # second copy of every series for the next scrape.
        self._push_readers = [r for r in readers if isinstance(r, PeriodicExportingMetricReader)]

        self.logger_provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        log_exps: list[LogRecordExporter] = []
        # The local log files, written by the SDK's processor for records made through
        # self.logger and directly, in batches, by emit_logs (the Monitor's inference records).
        self._log_files: tuple[_JsonLinesFile, _JsonLinesFile] | None = None
        if settings.telemetry_files:
            self._log_files = (
                _JsonLinesFile(tdir / LOGS_FILE, rotation),
                _JsonLinesFile(tdir / INFERENCE_LOG_FILE, rotation),
            )
            files = [
                _GuardedLogExporter(OtlpJsonLogExporter(self._log_files[0]), "file", self.failures),
                _GuardedLogExporter(
                    InferenceLogExporter(self._log_files[1]), "jsonl", self.failures
                ),
            ]
            log_exps.append(_FanOutLogExporter(files))
        self._batch_log_provider: LoggerProvider | None = None
        if otlp_logs is not None:
            # Its own processor: a collector outage (retries, timeouts) must not delay the files.
            log_exps.append(_GuardedLogExporter(otlp_logs, "otlp", self.failures))
            # emit_logs's records reach OTLP through a provider of their own (their files are
            # written directly), with its own exporter: the two processors never share one.
            self._batch_log_provider = LoggerProvider(
                resource=self.resource, shutdown_on_exit=False
            )
            self._batch_log_provider.add_log_record_processor(
                BatchLogRecordProcessor(
                    _GuardedLogExporter(log_exporter(otlp["logs"], timeout), "otlp", self.failures),
                    schedule_delay_millis=1000,
                )
            )
        for lexp in log_exps:
            self.logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(lexp, schedule_delay_millis=1000)
            )
        self._batch_logger = (
            None
            if self._batch_log_provider is None
            else self._batch_log_provider.get_logger(SCOPE, settings.service_version)
        )

        self.tracer = CompactTracer(self.span_pump, self.tracer_provider.sampler)
        self.meter = self.meter_provider.get_meter(SCOPE, settings.service_version)
        self.logger = self.logger_provider.get_logger(SCOPE, settings.service_version)
        self.instruments = self._create_instruments()
        self.meter.create_observable_counter(
            c.METRIC_EXPORT_FAILURES,
            callbacks=[self.failures.observe],
            unit=c.UNIT_FAILURE,
            description="Telemetry exports that failed, by signal and backend.",
        )
        self._lifecycle = threading.Lock()
        self._flushers: dict[Signal, _Flusher] = {
            "traces": _Flusher("traces", self.tracer_provider.force_flush),
            "metrics": _Flusher("metrics", self._flush_push_readers),
            "logs": _Flusher("logs", self._flush_logs),
        }
        self._shutdown_threads: list[threading.Thread] | None = None

    def _create_instruments(self) -> Instruments:
        m = self.meter
        predictions, errors = RunningCounts(), RunningCounts()
        m.create_observable_counter(
            c.METRIC_PREDICTIONS,
            callbacks=[predictions.observe],
            unit=c.UNIT_PREDICTION,
            description="Predictions served, by model, version and label.",
        )
        m.create_observable_counter(
            c.METRIC_ERRORS,
            callbacks=[errors.observe],
            unit=c.UNIT_ERROR,
            description="Failed or rejected inference requests, by error class.",
        )
        outcomes, overflow = RunningCounts(), RunningCounts()
        m.create_observable_counter(
            c.METRIC_GENAI_OUTCOMES,
            callbacks=[outcomes.observe],
            unit=c.UNIT_EVENT,
            description="Generations by how they ended: ok, empty, refused, truncated, "
            "cancelled or error.",
        )
        m.create_observable_counter(
            c.METRIC_ATTRIBUTE_OVERFLOW,
            callbacks=[overflow.observe],
            unit=c.UNIT_EVENT,
            description="Events whose metric attribute value was folded into 'other': free "
            "text, or more distinct values than the limit.",
        )
        specs = {
            "duration": (
                c.METRIC_DURATION,
                c.UNIT_SECONDS,
                "Duration of model inference, from input to prediction.",
                c.DURATION_BUCKETS_S,
            ),
            "confidence": (
                c.METRIC_CONFIDENCE,
                c.UNIT_RATIO,
                "Confidence of the predicted label (top-class probability).",
                c.CONFIDENCE_BUCKETS,
            ),
            "input_size": (
                c.METRIC_INPUT_SIZE,
                c.UNIT_ELEMENT,
                "Size of the model input (characters for text, values otherwise).",
                c.INPUT_SIZE_BUCKETS,
            ),
            "genai_duration": (
                c.METRIC_GENAI_OPERATION_DURATION,
                c.UNIT_SECONDS,
                "GenAI operation duration.",
                c.GENAI_DURATION_BUCKETS_S,
            ),
            "genai_tokens": (
                c.METRIC_GENAI_TOKEN_USAGE,
                c.UNIT_TOKEN,
                "Number of input and output tokens used.",
                c.GENAI_TOKEN_BUCKETS,
            ),
            "genai_ttft": (
                c.METRIC_GENAI_TIME_TO_FIRST_TOKEN,
                c.UNIT_SECONDS,
                "Time to generate first token for successful responses.",
                c.GENAI_TTFT_BUCKETS_S,
            ),
            "genai_tpot": (
                c.METRIC_GENAI_TIME_PER_OUTPUT_TOKEN,
                c.UNIT_SECONDS,
                "Time per output token generated after the first token for successful responses.",
                c.GENAI_TPOT_BUCKETS_S,
            ),
            "http_duration": (
                c.METRIC_HTTP_SERVER_DURATION,
                c.UNIT_SECONDS,
                "Duration of HTTP server requests.",
                c.HTTP_DURATION_BUCKETS_S,
            ),
        }
        histograms: dict[str, Histogram] = {}
        batched = HistogramSet(self._scope)
        for field, (name, unit, description, bounds) in specs.items():
            histograms[field] = batched.histogram(name, unit, description, bounds)
        try:
            batched.attach(self.meter_provider)
            self.histograms: HistogramSet | None = batched
        except NotImplementedError as exc:  # a reader wants exponential buckets
            _log.warning("histograms recorded through the SDK, not in batches: %s", exc)
            self.histograms = None
            for field, (name, unit, description, bounds) in specs.items():
                histograms[field] = _SdkHistogram(
                    m.create_histogram(
                        name,
                        unit=unit,
                        description=description,
                        explicit_bucket_boundaries_advisory=list(bounds),
                    )
                )
        return Instruments(
            predictions=predictions,
            errors=errors,
            genai_outcomes=outcomes,
            attribute_overflow=overflow,
            **histograms,
        )

    def record_http_duration(
        self, seconds: float, key: AttributeKey, span_context: trace_api.SpanContext
    ) -> None:
        """Record one ``http.server.request.duration`` (the HTTP server layer's callback)."""
        self.instruments.http_duration.record(
            seconds,
            key,
            span_context.trace_id,
            span_context.span_id,
            span_context.trace_flags.sampled,
        )

    def aggregate(self) -> None:
        """Fold the histograms' pending measurements (readers do it when they collect; the
        Monitor's worker calls this between collections, which bounds what is pending)."""
        if self.histograms is not None:
            self.histograms.aggregate()

    def emit_logs(self, entries: Sequence[LogEntry]) -> None:
        """Export a batch of log records: to the local files in one write each, to OTLP through
        the SDK (its batch processor).

        The files get exactly what the SDK path writes for the same records (an OTLP/JSON line
        per batch, one flat JSON line per record body), without an SDK object per record. A
        file that cannot be written counts as an export failure (``logs``/``file``); the
        records are lost, never raised into the caller.
        """
        if not entries:
            return
        if self._log_files is not None:
            otlp_file, flat_file = self._log_files
            try:
                request = log_entries_request(self.resource, self._scope, entries, time.time_ns())
                otlp_file.write(orjson.dumps(request, option=orjson.OPT_APPEND_NEWLINE))
                flat_file.write(
                    b"".join(
                        orjson.dumps(e[6], default=str, option=orjson.OPT_APPEND_NEWLINE)
                        for e in entries
                    )
                )
            except (OSError, TypeError) as exc:
                self.failures.record("logs", "file", repr(exc))
        logger = self._batch_logger
        if logger is not None:
            for t, trace_id, span_id, flags, severity, text, body, event_name in entries:
                sc = trace_api.SpanContext(
                    trace_id, span_id, is_remote=False, trace_flags=trace_api.TraceFlags(flags)
                )
                logger.emit(
                    timestamp=t,
                    context=trace_api.set_span_in_context(trace_api.NonRecordingSpan(sc)),
                    severity_number=logs_api.SeverityNumber(severity),
                    severity_text=text,
                    body=dict(body),
                    event_name=event_name,
                )

    def install_globals(self) -> dict[str, bool]:
        """Make these providers the OpenTelemetry globals wherever the application has not set
        its own; returns, per signal, whether infertrail's provider is the global one.

        A global still being the API's default proxy gets infertrail's provider; one the
        application set is kept (an INFO line says so): the application's telemetry then keeps
        going through its provider and infertrail's through infertrail's own. The API lets
        each global be set once per process, so this is idempotent and never overrides.
        """
        return {
            "traces": _install_global(
                "traces",
                self.tracer_provider,
                trace_api.get_tracer_provider,
                trace_api.set_tracer_provider,
                trace_api.ProxyTracerProvider,
            ),
            "metrics": _install_global(
                "metrics",
                self.meter_provider,
                metrics_api.get_meter_provider,
                metrics_api.set_meter_provider,
                _ProxyMeterProvider,
            ),
            "logs": _install_global(
                "logs",
                self.logger_provider,
                logs_api.get_logger_provider,
                logs_api.set_logger_provider,
                ProxyLoggerProvider,
            ),
        }

    def _log_providers(self) -> list[LoggerProvider]:
        extra = self._batch_log_provider
        return [self.logger_provider] if extra is None else [self.logger_provider, extra]

    def _flush_logs(self, timeout_millis: int) -> bool:
        return all([p.force_flush(timeout_millis) for p in self._log_providers()])

    def _shutdown_logs(self) -> None:
        for provider in self._log_providers():
            provider.shutdown()

    def _flush_push_readers(self, timeout_millis: int) -> bool:
        # A list, not a generator: a reader that fails must not keep the next from flushing.
        return all([r.force_flush(timeout_millis) for r in self._push_readers])

    def _describe(self, signals: Sequence[Signal]) -> str:
        """The signals, each with its OTLP target (the usual reason an export hangs)."""
        parts = []
        for signal in signals:
            target = self.otlp_targets.get(signal)
            where = f" (OTLP {target.protocol} {target.endpoint})" if target else ""
            parts.append(signal + where)
        return ", ".join(parts)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export everything buffered now (spans, metrics, logs); True if all of it was.

        Returns within ``timeout_millis`` whatever the collectors do: each signal flushes in a
        daemon thread, and one still exporting at the deadline goes on in the background (a
        warning names it) while this returns False. After :meth:`shutdown`, returns False.
        """
        deadline = time.monotonic() + timeout_millis / 1000
        with self._lifecycle:
            if self._shutdown_threads is not None:
                return False
            requests = {s: (f, f.request(timeout_millis)) for s, f in self._flushers.items()}
        results = {s: f.wait(generation, deadline) for s, (f, generation) in requests.items()}
        pending: list[Signal] = [s for s, ok in results.items() if ok is None]
        if pending:
            _log.warning(
                "telemetry flush did not finish in %.1f s; still exporting in the background: %s",
                timeout_millis / 1000,
                self._describe(pending),
            )
        return all(results.values())

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Flush and stop every provider within ``timeout_s``; True if all of them stopped.

        Each provider shuts down in a daemon thread; one still exporting at the deadline (a
        collector that accepts connections and never answers) is abandoned with a warning
        naming it: it goes on in the background, and what it has not exported when the process
        ends is lost. Idempotent: a later call starts nothing and says whether the providers
        have stopped by now.
        """
        with self._lifecycle:
            if self._shutdown_threads is not None:
                return not any(t.is_alive() for t in self._shutdown_threads)
            # No inner timeouts: given a spent one, the SDK would skip stopping the metric
            # readers' threads; the join below is the bound.
            jobs: dict[Signal, Callable[[], Any]] = {
                "traces": self.tracer_provider.shutdown,
                "metrics": self.meter_provider.shutdown,
                "logs": self._shutdown_logs,
            }
            threads = {
                signal: threading.Thread(
                    target=_logged(f"{signal} shutdown", job),
                    name=f"infertrail-shutdown-{signal}",
                    daemon=True,
                )
                for signal, job in jobs.items()
            }
            deadline = time.monotonic() + timeout_s
            for thread in threads.values():
                thread.start()
            self._shutdown_threads = list(threads.values())
        for flusher in self._flushers.values():
            flusher.close()
        for thread in threads.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        abandoned = [s for s, thread in threads.items() if thread.is_alive()]
        if abandoned:
            _log.warning(
                "telemetry shutdown did not finish in %.1f s; abandoned (left running in the "
                "background; what is not exported by the time the process ends is lost): %s",
                timeout_s,
                self._describe(abandoned),
            )
        return not abandoned
