"""Where each signal goes over OTLP, resolved as the OpenTelemetry exporter spec says, and the
exporters that send it there.

Resolution (:func:`resolve_otlp`) is a pure function of the settings:

* a signal's own endpoint (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ...) is used as it is;
* otherwise the base endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``) is used, with ``v1/traces``,
  ``v1/metrics`` or ``v1/logs`` appended for OTLP/HTTP and unchanged for OTLP/gRPC;
* a signal with neither is not exported over OTLP at all, so a traces-only backend never sees a
  request for metrics or logs;
* the protocol is the signal's own (``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``, ...) or the general
  one (``OTEL_EXPORTER_OTLP_PROTOCOL``), ``http/protobuf`` by default.

The exporter packages are imported by the factories below, only for a signal that has a target:
without OTLP, importing the telemetry setup loads neither requests nor gRPC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from opentelemetry.sdk._logs.export import LogRecordExporter
    from opentelemetry.sdk.metrics.export import MetricExporter
    from opentelemetry.sdk.trace.export import SpanExporter

    from infertrail.config import Settings

__all__ = [
    "DEFAULT_PROTOCOL",
    "PROTOCOLS",
    "SIGNALS",
    "OtlpProtocol",
    "OtlpTarget",
    "Signal",
    "log_exporter",
    "metric_exporter",
    "resolve_otlp",
    "span_exporter",
]

Signal = Literal["traces", "metrics", "logs"]
OtlpProtocol = Literal["grpc", "http/protobuf"]

SIGNALS: Final[tuple[Signal, ...]] = ("traces", "metrics", "logs")
PROTOCOLS: Final[tuple[OtlpProtocol, ...]] = ("grpc", "http/protobuf")
DEFAULT_PROTOCOL: Final[OtlpProtocol] = "http/protobuf"


@dataclass(frozen=True)
class OtlpTarget:
    """Where one signal is exported over OTLP, and how.

    ``endpoint`` is the full URL the exporter sends to: for OTLP/HTTP it includes the signal's
    path; for OTLP/gRPC it is ``scheme://host:port`` (``http`` means no TLS).
    """

    endpoint: str
    protocol: OtlpProtocol


def resolve_otlp(settings: Settings) -> dict[Signal, OtlpTarget]:
    """The OTLP target of every signal that has one; signals without are absent.

    Raises ValueError for a gRPC endpoint with a path: the gRPC exporter would silently send to
    ``host:port`` instead, which is most often an OTLP/HTTP URL given the wrong protocol.
    """
    own: dict[Signal, tuple[str | None, OtlpProtocol | None]] = {
        "traces": (settings.otlp_traces_endpoint, settings.otlp_traces_protocol),
        "metrics": (settings.otlp_metrics_endpoint, settings.otlp_metrics_protocol),
        "logs": (settings.otlp_logs_endpoint, settings.otlp_logs_protocol),
    }
    base = settings.otlp_endpoint
    targets: dict[Signal, OtlpTarget] = {}
    for signal in SIGNALS:
        endpoint, own_protocol = own[signal]
        protocol = own_protocol or settings.otlp_protocol
        field = f"otlp_{signal}_endpoint (OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT)"
        if endpoint is None:
            if base is None:
                continue
            field = "otlp_endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)"
            # The spec's base-URL rule: append the signal path, after one '/', for HTTP only.
            endpoint = base if protocol == "grpc" else f"{base.rstrip('/')}/v1/{signal}"
        if protocol == "grpc":
            _check_grpc_endpoint(endpoint, field, signal)
        targets[signal] = OtlpTarget(endpoint, protocol)
    return targets


def _check_grpc_endpoint(endpoint: str, field: str, signal: Signal) -> None:
    path = urlsplit(endpoint).path
    if path not in ("", "/"):
        raise ValueError(
            f"{field} = {endpoint!r} is used for {signal} over OTLP/gRPC, which takes "
            f"scheme://host:port without a path (got path {path!r}); drop the path, or set "
            f"otlp_{signal}_protocol (OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL) to "
            "'http/protobuf' if this is an OTLP/HTTP URL"
        )


def _grpc_missing(signal: Signal, exc: ImportError) -> ImportError:
    return ImportError(
        f"OTLP/gRPC export of {signal} needs the gRPC exporter, which is not installed "
        f"({exc}): install infertrail[grpc], or use protocol 'http/protobuf'"
    )


def span_exporter(target: OtlpTarget, timeout_s: float) -> SpanExporter:
    """An OTLP span exporter for ``target``; ``timeout_s`` bounds each export (with retries)."""
    if target.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError as exc:
            raise _grpc_missing("traces", exc) from exc
        return GrpcSpanExporter(endpoint=target.endpoint, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=target.endpoint, timeout=timeout_s)


def metric_exporter(target: OtlpTarget, timeout_s: float) -> MetricExporter:
    """An OTLP metric exporter for ``target``; ``timeout_s`` bounds each export."""
    if target.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcMetricExporter,
            )
        except ImportError as exc:
            raise _grpc_missing("metrics", exc) from exc
        return GrpcMetricExporter(endpoint=target.endpoint, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=target.endpoint, timeout=timeout_s)


def log_exporter(target: OtlpTarget, timeout_s: float) -> LogRecordExporter:
    """An OTLP log record exporter for ``target``; ``timeout_s`` bounds each export."""
    if target.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
                OTLPLogExporter as GrpcLogExporter,
            )
        except ImportError as exc:
            raise _grpc_missing("logs", exc) from exc
        return GrpcLogExporter(endpoint=target.endpoint, timeout=timeout_s)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=target.endpoint, timeout=timeout_s)
