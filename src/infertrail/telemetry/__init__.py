"""OpenTelemetry setup, conventions and exporters.

:class:`Telemetry` owns one process's tracer, meter and logger providers; ``conventions`` spells
every name infertrail emits.
"""

from infertrail.telemetry import conventions
from infertrail.telemetry.setup import ExportFailures, Instruments, Telemetry, make_sampler

__all__ = ["ExportFailures", "Instruments", "Telemetry", "conventions", "make_sampler"]
