"""OpenTelemetry setup, conventions and exporters."""
