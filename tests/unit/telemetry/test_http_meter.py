"""The HTTP instrumentation's meter: the stable duration histogram is real, the rest no-ops."""

from __future__ import annotations

from opentelemetry import metrics as metrics_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader

from infertrail.telemetry.http import (
    HTTP_SERVER_DURATION,
    SelectedMetersProvider,
    http_meter_provider,
)


def _names(reader: InMemoryMetricReader) -> set[str]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def test_only_the_kept_histogram_reaches_the_sdk() -> None:
    reader = InMemoryMetricReader()
    meter = http_meter_provider(MeterProvider(metric_readers=[reader])).get_meter("asgi", "1")
    duration = meter.create_histogram(HTTP_SERVER_DURATION, unit="s")
    body = meter.create_histogram("http.server.request.body.size", unit="By")
    active = meter.create_up_down_counter("http.server.active_requests")
    duration.record(0.01, {"http.request.method": "POST"})
    body.record(120)
    active.add(1)
    assert isinstance(body, metrics_api.NoOpHistogram)
    assert isinstance(active, metrics_api.NoOpUpDownCounter)
    assert _names(reader) == {HTTP_SERVER_DURATION}


def test_kept_histogram_keeps_its_bucket_advice() -> None:
    reader = InMemoryMetricReader()
    provider = SelectedMetersProvider(MeterProvider(metric_readers=[reader]), ["h"])
    h = provider.get_meter("x").create_histogram("h", explicit_bucket_boundaries_advisory=[1, 2])
    h.record(1.5)
    data = reader.get_metrics_data()
    assert data is not None
    point = data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0]
    assert isinstance(point, HistogramDataPoint)
    assert list(point.explicit_bounds) == [1, 2]
    assert list(point.bucket_counts) == [0, 1, 0]
