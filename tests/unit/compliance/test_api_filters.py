"""Filters that would be written into the permanent audit log are checked before anything is:
the pseudonym against the form the privacy layer issues, model, version and decision against
control characters, through the API and through `infertrail audit query`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog
from infertrail.compliance.access import RateLimiter
from infertrail.compliance.api import include_compliance_api
from infertrail.compliance.filters import PSEUDONYM_PATTERN, QueryError, QueryFilters, parse_window
from infertrail.privacy.pseudonyms import new_pseudonym

from .conftest import ORIGIN, Template, World, settings_for
from .test_cli import WINDOW as CLI_WINDOW
from .test_cli import run

WINDOW = {"from": "2026-07-01", "to": "2026-07-04"}
Q3 = parse_window("2026-07-01", "2026-10-01", 366)

BAD_PSEUDONYMS = [
    "' OR 1=1 --",
    "p-00000000000000000000000000000000\x00",
    "../../etc/passwd",
    "p-ABCDEF00000000000000000000000000",  # upper case: never issued
    "p-0000",
    "alice-001",  # a raw subject id is not a pseudonym
    "x" * 256,
]
BAD_TEXT = ["credit\x00", "line\nbreak", "\x1b[31mred", "tab\there", "c1\x85", "x" * 257]


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    include_compliance_api(app, world.service, world.users, limiter=RateLimiter(1000.0, 1000))
    with TestClient(app) as c:
        yield c


def get(client: TestClient, world: World, **params: str) -> Any:
    key = world.keys["auditor"]
    return client.get(
        "/v1/audit/records", params=params, headers={"Authorization": f"Bearer {key}"}
    )


@pytest.mark.parametrize("pseudonym", BAD_PSEUDONYMS)
def test_a_malformed_pseudonym_is_refused_and_nothing_is_logged(
    client: TestClient, world: World, pseudonym: str
) -> None:
    size = world.log.size
    response = get(client, world, pseudonym=pseudonym, **WINDOW)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_query"
    [problem] = body["detail"]
    assert problem["field"] == "pseudonym"
    assert "'p-' and 32 lowercase hex digits" in problem["message"]
    assert pseudonym not in response.text  # never echoed
    assert world.log.size == size  # no access record carries it


@pytest.mark.parametrize("field", ["model_name", "model_version", "decision"])
@pytest.mark.parametrize("value", BAD_TEXT)
def test_control_characters_in_text_filters_are_refused(
    client: TestClient, world: World, field: str, value: str
) -> None:
    size = world.log.size
    response = get(client, world, **{field: value}, **WINDOW)
    assert response.status_code == 422, response.text
    [problem] = response.json()["detail"]
    assert problem["field"] == field
    assert "none a control character" in problem["message"]
    assert world.log.size == size


def test_a_real_pseudonym_is_queried_and_written_as_given(client: TestClient, world: World) -> None:
    pseudonym = world.template.pseudonyms["bob-002"]
    response = get(client, world, pseudonym=pseudonym, **WINDOW)
    assert response.status_code == 200, response.text
    assert response.json()["filters"]["pseudonym"] == pseudonym
    # SQL-looking text in a model name is only ever a value to match, and it matches nothing.
    response = get(client, world, model_name="x' OR '1'='1", **WINDOW)
    assert response.status_code == 200 and response.json()["count"] == 0


def test_the_pattern_is_the_one_the_privacy_layer_issues() -> None:
    for _ in range(50):
        assert QueryFilters.create(Q3, pseudonym=new_pseudonym()).pseudonym
    assert PSEUDONYM_PATTERN == r"^p-[0-9a-f]{32}$"
    with pytest.raises(QueryError) as info:
        QueryFilters.create(Q3, pseudonym="p-" + "0" * 31 + "\ud800")
    assert info.value.field == "pseudonym"
    with pytest.raises(QueryError) as info:
        QueryFilters.create(Q3, decision="approve\ud800")  # a command line can carry one
    assert info.value.field == "decision"


@pytest.fixture
def data(template: Template, tmp_path: Path) -> Any:
    shutil.copytree(template.root / "data", tmp_path / "data")
    return settings_for(tmp_path / "data")


def log_size(settings: Any) -> int:
    signer = load_signer(settings.signing_key_file)
    with AuditLog.open(settings.audit_log_dir, signer=signer, origin=ORIGIN, fsync=False) as log:
        return log.size


@pytest.mark.parametrize("pseudonym", ["' OR 1=1 --", "../x", "p-\x00"])
def test_the_cli_refuses_a_malformed_pseudonym_before_writing(data: Any, pseudonym: str) -> None:
    size = log_size(data)
    result = run(data, "audit", "query", *CLI_WINDOW, "--actor", "staff-auditor",
                 "--pseudonym", pseudonym)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "pseudonym" in result.stderr and "32 lowercase hex digits" in result.stderr
    assert log_size(data) == size


def test_the_cli_queries_a_real_pseudonym(data: Any, template: Template) -> None:
    pseudonym = template.pseudonyms["alice-001"]
    result = run(data, "audit", "query", *CLI_WINDOW, "--actor", "staff-auditor",
                 "--pseudonym", pseudonym, "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["filters"]["pseudonym"] == pseudonym
