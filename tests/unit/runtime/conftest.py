"""Fixtures of the feature packages whose assembly the runtime tests exercise."""

from tests.unit.alerting.conftest import fake_time
from tests.unit.outcomes.conftest import service, service_settings
from tests.unit.privacy.conftest import (
    audit_log,
    clock,
    keyring,
    keys,
    log_dir,
    recorder,
    store,
    table,
)

__all__ = [
    "audit_log",
    "clock",
    "fake_time",
    "keyring",
    "keys",
    "log_dir",
    "recorder",
    "service",
    "service_settings",
    "store",
    "table",
]
