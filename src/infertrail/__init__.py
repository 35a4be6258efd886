"""infertrail: observability and a tamper-evident audit trail for AI inference."""

__version__ = "0.1.0"
