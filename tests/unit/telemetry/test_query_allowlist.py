"""The ``telemetry_query_allowlist`` setting: empty by default, never a subject's parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from infertrail.config import SUBJECT_QUERY_PARAMETERS, Settings


@pytest.mark.usefixtures("clean_env")
def test_empty_by_default_every_value_redacted() -> None:
    assert Settings().telemetry_query_allowlist == []


@pytest.mark.usefixtures("clean_env")
def test_set_by_environment_json_or_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INFERTRAIL_TELEMETRY_QUERY_ALLOWLIST", '["model", "limit"]')
    assert Settings().telemetry_query_allowlist == ["model", "limit"]
    monkeypatch.delenv("INFERTRAIL_TELEMETRY_QUERY_ALLOWLIST")
    (tmp_path / "infertrail.toml").write_text('telemetry_query_allowlist = ["decision"]\n')
    assert Settings().telemetry_query_allowlist == ["decision"]


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", [*sorted(SUBJECT_QUERY_PARAMETERS), "Subject_ID"])
def test_a_subjects_parameter_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match=f"{name!r} names a subject"):
        Settings(telemetry_query_allowlist=["model", name])


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize("name", ["", "a=b", "a&b", "with space", "q?", "x%41", "a+b", "x" * 65])
def test_what_is_not_a_parameter_name_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="is not a query parameter name"):
        Settings(telemetry_query_allowlist=[name])
