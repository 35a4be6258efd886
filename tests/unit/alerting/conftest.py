"""Fixtures for the alerting tests."""

from __future__ import annotations

import pytest

from tests.unit.alerting.helpers import FakeTime


@pytest.fixture
def fake_time() -> FakeTime:
    """A clock that advances only through the code under test's sleeps."""
    return FakeTime()
