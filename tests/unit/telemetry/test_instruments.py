"""The instruments a Monitor records into, whichever way the readers want their histograms."""

from __future__ import annotations

from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import Histogram as SdkHistogram
from opentelemetry.sdk.metrics.export import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    InMemoryMetricReader,
)
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.monitor import Monitor
from infertrail.telemetry import conventions as c
from infertrail.telemetry.setup import Telemetry

MODEL = ModelInfo("m", "1", "ab" * 32)


def durations(reader: InMemoryMetricReader) -> list[object]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
        if metric.name == c.METRIC_DURATION
        for point in metric.data.data_points
    ]


def observe_three(settings: Settings, reader: InMemoryMetricReader) -> None:
    telemetry = Telemetry(settings, metric_readers=[reader])
    monitor = Monitor(settings, telemetry=telemetry)
    for _ in range(3):
        with monitor.observe(MODEL, "text") as ev:
            ev.label = "a"
    monitor.flush()
    monitor.shutdown()


def test_histograms_are_batched_and_reach_every_reader(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, telemetry_files=False)
    reader = InMemoryMetricReader()
    observe_three(settings, reader)
    (point,) = durations(reader)
    assert isinstance(point, HistogramDataPoint)
    assert point.count == 3
    assert len(point.exemplars) >= 1  # the inference spans are sampled


def test_a_reader_wanting_exponential_buckets_gets_the_sdks_histograms(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, telemetry_files=False)
    reader = InMemoryMetricReader(
        preferred_aggregation={SdkHistogram: ExponentialBucketHistogramAggregation()}
    )
    observe_three(settings, reader)
    (point,) = durations(reader)
    assert isinstance(point, ExponentialHistogramDataPoint)
    assert point.count == 3
    assert "not in batches" in caplog.text
