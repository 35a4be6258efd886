"""infertrail: observability and a tamper-evident audit trail for AI inference."""
