"""The meter handed to the HTTP server instrumentation: only the metrics we publish are real.

``opentelemetry-instrumentation-asgi`` records five measurements per request: the stable
``http.server.request.duration`` histogram, request and response body size histograms and an
``http.server.active_requests`` up-down counter (added to twice). Each synchronous measurement
costs ~7 us in the SDK's API layer plus ~5 us per metric reader, on the event loop thread, even
when a View drops it. The issue asks for the duration histogram; the others are handed no-op
instruments here, so they cost a method call.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from opentelemetry import metrics as metrics_api
from opentelemetry.util.types import Attributes

from infertrail.telemetry import conventions as c

HTTP_SERVER_DURATION = c.METRIC_HTTP_SERVER_DURATION


class SelectedMetersProvider(metrics_api.MeterProvider):
    """A meter provider whose meters create real synchronous histograms only for ``keep``.

    Every other instrument is the API's no-op one. Only for instrumentation libraries whose
    metrics are partly wanted; infertrail's own meter is the real provider's.
    """

    def __init__(self, inner: metrics_api.MeterProvider, keep: Collection[str]) -> None:
        self._inner = inner
        self._keep = frozenset(keep)

    def get_meter(
        self,
        name: str,
        version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> metrics_api.Meter:
        """A meter passing the kept histograms to the real provider's meter of this name."""
        real = self._inner.get_meter(name, version, schema_url, attributes)
        return _SelectedMeter(real, self._keep, name, version, schema_url)


class _SelectedMeter(metrics_api.NoOpMeter):
    def __init__(
        self,
        real: metrics_api.Meter,
        keep: frozenset[str],
        name: str,
        version: str | None,
        schema_url: str | None,
    ) -> None:
        super().__init__(name, version=version, schema_url=schema_url)
        self._real = real
        self._keep = keep

    def create_histogram(
        self,
        name: str,
        unit: str = "",
        description: str = "",
        *,
        explicit_bucket_boundaries_advisory: Sequence[float] | None = None,
    ) -> metrics_api.Histogram:
        if name in self._keep:
            return self._real.create_histogram(
                name,
                unit,
                description,
                explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory,
            )
        return super().create_histogram(
            name,
            unit,
            description,
            explicit_bucket_boundaries_advisory=explicit_bucket_boundaries_advisory,
        )


def http_meter_provider(inner: metrics_api.MeterProvider) -> SelectedMetersProvider:
    """What the FastAPI instrumentation gets: the stable request duration histogram only."""
    return SelectedMetersProvider(inner, [HTTP_SERVER_DURATION])
