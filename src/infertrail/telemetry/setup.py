"""Builds the OpenTelemetry providers, exporters and instruments from :class:`Settings`.

Files (OTLP/JSON lines under ``<data_dir>/telemetry``) are the default; OTLP/HTTP is added when an
endpoint is configured; a Prometheus registry backs the service's ``/metrics``. Every exporter is
wrapped so that an outage is counted and logged, never raised into a request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from opentelemetry import metrics as metrics_api
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
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
from prometheus_client import CollectorRegistry

from infertrail.config import Settings
from infertrail.telemetry import conventions as c
from infertrail.telemetry.files import (
    LOGS_FILE,
    METRICS_FILE,
    TRACES_FILE,
    OtlpJsonLogExporter,
    OtlpJsonMetricExporter,
    OtlpJsonSpanExporter,
    _JsonLinesFile,
)

_log = logging.getLogger("infertrail.telemetry")

INFERENCE_LOG_FILE = "inference.log.jsonl"
SCOPE = "infertrail"

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
            metrics_api.Observation(n, {"signal": signal, "backend": backend})
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

    def __init__(self, path: Any) -> None:
        self._file = _JsonLinesFile(path)

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
        return None

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


@dataclass
class Instruments:
    """The metric instruments every inference records into.

    Histograms are the SDK's synchronous ones (their exemplars point at the inference span);
    the two counters are observable over :class:`RunningCounts`.
    """

    duration: metrics_api.Histogram
    confidence: metrics_api.Histogram
    predictions: RunningCounts
    errors: RunningCounts
    input_size: metrics_api.Histogram


class Telemetry:
    """Owns the tracer, meter and logger providers of one process (or one test)."""

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
                "service.name": settings.service_name,
                "service.version": settings.service_version,
                "deployment.environment.name": settings.deployment_environment,
                "infertrail.team": settings.team,
            }
        )
        tdir = settings.telemetry_dir
        otlp = settings.otlp_endpoint

        self.tracer_provider = TracerProvider(
            resource=self.resource,
            sampler=make_sampler(settings.traces_sampler, settings.traces_sampler_arg),
        )
        span_exps: list[tuple[SpanExporter, str]] = [(e, "custom") for e in span_exporters]
        if settings.telemetry_files:
            span_exps.append((OtlpJsonSpanExporter(tdir / TRACES_FILE), "file"))
        if otlp:
            span_exps.append((OTLPSpanExporter(endpoint=f"{otlp}/v1/traces", timeout=5), "otlp"))
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
            file_exp = OtlpJsonMetricExporter(tdir / METRICS_FILE)
            readers.append(
                PeriodicExportingMetricReader(
                    _GuardedMetricExporter(file_exp, "file", self.failures),
                    export_interval_millis=interval,
                )
            )
        if otlp:
            otlp_exp = OTLPMetricExporter(endpoint=f"{otlp}/v1/metrics", timeout=5)
            readers.append(
                PeriodicExportingMetricReader(
                    _GuardedMetricExporter(otlp_exp, "otlp", self.failures),
                    export_interval_millis=interval,
                )
            )
        self.meter_provider = MeterProvider(resource=self.resource, metric_readers=readers)
        # Only push readers are flushed: a collect() on the Prometheus reader would queue a
        # second copy of every series for the next scrape.
        self._push_readers = [r for r in readers if isinstance(r, PeriodicExportingMetricReader)]

        self.logger_provider = LoggerProvider(resource=self.resource)
        log_exps: list[LogRecordExporter] = []
        if settings.telemetry_files:
            files = [
                _GuardedLogExporter(OtlpJsonLogExporter(tdir / LOGS_FILE), "file", self.failures),
                _GuardedLogExporter(
                    InferenceLogExporter(tdir / INFERENCE_LOG_FILE), "jsonl", self.failures
                ),
            ]
            log_exps.append(_FanOutLogExporter(files))
        if otlp:
            otlp_logs = OTLPLogExporter(endpoint=f"{otlp}/v1/logs", timeout=5)
            # Its own processor: a collector outage (retries, timeouts) must not delay the files.
            log_exps.append(_GuardedLogExporter(otlp_logs, "otlp", self.failures))
        for lexp in log_exps:
            self.logger_provider.add_log_record_processor(
                BatchLogRecordProcessor(lexp, schedule_delay_millis=1000)
            )

        self.tracer = self.tracer_provider.get_tracer(SCOPE, settings.service_version)
        self.meter = self.meter_provider.get_meter(SCOPE, settings.service_version)
        self.logger = self.logger_provider.get_logger(SCOPE, settings.service_version)
        self.instruments = self._create_instruments()
        self.meter.create_observable_counter(
            c.METRIC_EXPORT_FAILURES,
            callbacks=[self.failures.observe],
            unit="{failure}",
            description="Telemetry exports that failed, by signal and backend.",
        )

    def _create_instruments(self) -> Instruments:
        m = self.meter
        predictions, errors = RunningCounts(), RunningCounts()
        m.create_observable_counter(
            c.METRIC_PREDICTIONS,
            callbacks=[predictions.observe],
            unit="{prediction}",
            description="Predictions served, by model, version and label.",
        )
        m.create_observable_counter(
            c.METRIC_ERRORS,
            callbacks=[errors.observe],
            unit="{error}",
            description="Failed or rejected inference requests, by error class.",
        )
        return Instruments(
            duration=m.create_histogram(
                c.METRIC_DURATION,
                unit="s",
                description="Duration of model inference, from input to prediction.",
                explicit_bucket_boundaries_advisory=list(c.DURATION_BUCKETS_S),
            ),
            confidence=m.create_histogram(
                c.METRIC_CONFIDENCE,
                unit="1",
                description="Confidence of the predicted label (top-class probability).",
                explicit_bucket_boundaries_advisory=list(c.CONFIDENCE_BUCKETS),
            ),
            predictions=predictions,
            errors=errors,
            input_size=m.create_histogram(
                c.METRIC_INPUT_SIZE,
                unit="{element}",
                description="Size of the model input (characters for text, values otherwise).",
                explicit_bucket_boundaries_advisory=list(c.INPUT_SIZE_BUCKETS),
            ),
        )

    def force_flush(self, timeout_millis: int = 10_000) -> None:
        """Export everything buffered now (spans, metrics, logs)."""
        self.tracer_provider.force_flush(timeout_millis)
        for reader in self._push_readers:
            reader.force_flush(timeout_millis)
        self.logger_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop every provider; idempotent."""
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        self.logger_provider.shutdown()
