"""Telemetry.install_globals: infertrail's providers become the OpenTelemetry globals only where
the application has not set its own.

The OpenTelemetry API lets each global provider be set once per process, so every scenario runs
in a fresh interpreter: a global set by one test can never leak into another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

_PRELUDE = """
import json, logging, sys
from opentelemetry import _logs, metrics, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from infertrail.config import Settings
from infertrail.telemetry.setup import Telemetry

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
ours = InMemorySpanExporter()
telemetry = Telemetry(Settings(telemetry_files=False), span_exporters=[ours])

def span_names(exporter):
    return sorted(s.name for s in exporter.get_finished_spans())
"""


def _scenario(body: str, cwd: Path) -> tuple[dict[str, Any], list[str]]:
    """Run ``body`` after the prelude; its last stdout line is JSON. Returns it and the INFO
    lines logged."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "INFERTRAIL_"))}
    run = subprocess.run(
        [sys.executable, "-c", _PRELUDE + textwrap.dedent(body)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    info = [line for line in run.stderr.splitlines() if line.startswith("INFO ")]
    return json.loads(run.stdout.splitlines()[-1]), info


def test_unset_globals_become_infertrails(tmp_path: Path) -> None:
    result, info = _scenario(
        """
        first = telemetry.install_globals()
        again = telemetry.install_globals()
        trace.get_tracer("app").start_span("app-span").end()
        telemetry.force_flush(5000)
        print(json.dumps({
            "first": first,
            "again": again,
            "is_ours": [
                trace.get_tracer_provider() is telemetry.tracer_provider,
                metrics.get_meter_provider() is telemetry.meter_provider,
                _logs.get_logger_provider() is telemetry.logger_provider,
            ],
            "ours": span_names(ours),
        }))
        telemetry.shutdown()
        """,
        tmp_path,
    )
    everything = {"traces": True, "metrics": True, "logs": True}
    assert result["first"] == result["again"] == everything
    assert result["is_ours"] == [True, True, True]
    # Spans the application makes through the global API now go to infertrail's exporters.
    assert result["ours"] == ["app-span"]
    assert info == []


def test_an_application_tracer_provider_is_kept(tmp_path: Path) -> None:
    result, info = _scenario(
        """
        app_spans = InMemorySpanExporter()
        app_provider = TracerProvider()
        app_provider.add_span_processor(SimpleSpanProcessor(app_spans))
        trace.set_tracer_provider(app_provider)

        installed = telemetry.install_globals()
        trace.get_tracer("app").start_span("app-span").end()
        telemetry.tracer.start_span("infertrail-span").end()
        telemetry.force_flush(5000)
        print(json.dumps({
            "installed": installed,
            "global_is_app": trace.get_tracer_provider() is app_provider,
            "metrics_ours": metrics.get_meter_provider() is telemetry.meter_provider,
            "app": span_names(app_spans),
            "ours": span_names(ours),
        }))
        telemetry.shutdown()
        """,
        tmp_path,
    )
    assert result["installed"] == {"traces": False, "metrics": True, "logs": True}
    assert result["global_is_app"] and result["metrics_ours"]
    # Each side's spans go through its own provider, and only there.
    assert result["app"] == ["app-span"]
    assert result["ours"] == ["infertrail-span"]
    assert len(info) == 1
    assert "OpenTelemetry traces: keeping the global provider already set" in info[0]
    assert "opentelemetry.sdk.trace.TracerProvider" in info[0]


def test_all_application_providers_are_kept_one_line_each(tmp_path: Path) -> None:
    result, info = _scenario(
        """
        trace.set_tracer_provider(TracerProvider())
        metrics.set_meter_provider(MeterProvider())
        _logs.set_logger_provider(LoggerProvider())
        print(json.dumps(telemetry.install_globals()))
        telemetry.shutdown()
        """,
        tmp_path,
    )
    assert result == {"traces": False, "metrics": False, "logs": False}
    assert [line.split(":")[0] for line in info] == [
        "INFO OpenTelemetry traces",
        "INFO OpenTelemetry metrics",
        "INFO OpenTelemetry logs",
    ]


def test_creating_telemetry_does_not_touch_the_globals(tmp_path: Path) -> None:
    result, _ = _scenario(
        """
        print(json.dumps([
            type(trace.get_tracer_provider()).__name__,
            type(metrics.get_meter_provider()).__name__,
            type(_logs.get_logger_provider()).__name__,
        ]))
        telemetry.shutdown()
        """,
        tmp_path,
    )
    assert result == ["ProxyTracerProvider", "_ProxyMeterProvider", "ProxyLoggerProvider"]
