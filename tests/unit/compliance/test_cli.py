"""CLI twins: `users add/list/revoke`, `audit query` and `audit export`, local and via the API."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import click
import pytest
from click.testing import CliRunner
from fastapi import FastAPI
from fastapi.testclient import TestClient

from infertrail.audit.keys import load_signer
from infertrail.audit.ledger import AuditLog
from infertrail.compliance import cli as query_cli
from infertrail.compliance.api import compliance_router

from .conftest import ORIGIN, Template, World, settings_for

JUSTIFY = "DSAR-1142: subject asked for their decisions"
WINDOW = ["--from", "2026-07-01", "--to", "2026-07-04"]


def make_root(settings: Any) -> click.Group:
    """`infertrail` as the lead mounts it: users at the top, query/export under audit."""

    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(settings=settings)

    audit = click.Group("audit")
    audit.add_command(query_cli.query)
    audit.add_command(query_cli.export)
    root.add_command(audit)
    root.add_command(query_cli.users)
    return root


@pytest.fixture
def data(template: Template, tmp_path: Path) -> Any:
    """A closed copy of the world: no server holds the log, so the CLI works locally."""
    shutil.copytree(template.root / "data", tmp_path / "data")
    return settings_for(tmp_path / "data")


def run(settings: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(make_root(settings), list(args), env=env, catch_exceptions=False)


def log_records(settings: Any, start: int) -> list[dict[str, Any]]:
    signer = load_signer(settings.signing_key_file)
    with AuditLog.open(settings.audit_log_dir, signer=signer, origin=ORIGIN, fsync=False) as log:
        return [json.loads(p) for _, p in log.read(start, log.size)]


def expected(template: Template, **match: Any) -> list[int]:
    return [
        r["seq"]
        for r in template.written
        if "2026-07-01" <= r["ts"][:10] < "2026-07-04"
        and all(r.get(k) == v for k, v in match.items())
    ]


def test_users_add_list_revoke(data: Any) -> None:
    added = run(data, "users", "add", "staff-500", "--role", "auditor")
    assert added.exit_code == 0
    key = added.stdout.strip()
    assert key.startswith("itk_") and "shown only once" in added.stderr
    listed = run(data, "users", "list", "--json")
    names = {u["name"]: u for u in json.loads(listed.stdout)}
    assert names["staff-500"]["role"] == "auditor" and key not in listed.stdout
    assert run(data, "users", "revoke", "staff-500").exit_code == 0
    assert "revoked" in run(data, "users", "list").stdout
    again = run(data, "users", "add", "staff-500", "--role", "admin")
    assert again.exit_code == 2 and "never reused" in again.stderr
    assert run(data, "users", "add", "x", "--role", "root").exit_code == 2
    assert run(data, "users", "revoke", "ghost").exit_code == 2


def test_query_local_json_is_audited_with_cli_channel(data: Any, template: Template) -> None:
    result = run(data, "audit", "query", "--subject", "alice-001", *WINDOW,
                 "--justification", JUSTIFY, "--actor", "staff-compliance",
                 "--format", "json", "--limit", "1000")  # fmt: skip
    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    pseudonym = template.pseudonyms["alice-001"]
    assert [r["seq"] for r in page["rows"]] == expected(template, subject=pseudonym)
    assert all(r["inclusion_proof"] for r in page["rows"])
    [record] = log_records(data, page["access_seq"])[:1]
    assert record["event_type"] == "access_query"
    assert record["actor"]["id"] == "staff-compliance"
    assert record["actor"]["channel"] == "cli" and record["actor"]["os_user"]
    assert record["subject"] == pseudonym
    assert record["access_query"]["justification"] == JUSTIFY


def test_query_table_and_csv(data: Any, template: Template) -> None:
    table = run(data, "audit", "query", *WINDOW, "--decision", "refer",
                "--actor", "staff-auditor", "--limit", "3")  # fmt: skip
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["seq", "ts", "event_type", "subject", "model_name",
                                "model_version", "decision"]  # fmt: skip
    assert [int(line.split()[0]) for line in lines[1:]] == expected(template, decision="refer")[:3]
    assert "more: --cursor" in table.stderr
    as_csv = run(data, "audit", "query", *WINDOW, "--actor", "staff-auditor", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [int(r["seq"]) for r in rows] == expected(template)


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--actor", "ghost"], 2, "does not exist"),
        ([], 2, "--actor NAME is required"),
        (["--actor", "staff-auditor", "--subject", "alice-001", "--justification", JUSTIFY], 1,
         "resolve_subject"),
        (["--actor", "staff-engineer"], 1, "read_decisions"),
        (["--actor", "staff-compliance", "--subject", "alice-001"], 2, "--justification"),
        (["--actor", "staff-auditor", "--event-type", "bogus"], 2, "--event-type"),
    ],
)  # fmt: skip
def test_query_refusals(data: Any, args: list[str], code: int, message: str) -> None:
    result = run(data, "audit", "query", *WINDOW, *args)
    assert result.exit_code == code
    assert message in result.stderr


def test_bad_window_names_the_option(data: Any) -> None:
    result = run(data, "audit", "query", "--from", "2026-07-04", "--to", "2026-07-01",
                 "--actor", "staff-auditor")  # fmt: skip
    assert result.exit_code == 2 and "--to:" in result.stderr


def test_revoked_actor_is_refused(data: Any) -> None:
    run(data, "users", "revoke", "staff-auditor")
    result = run(data, "audit", "query", *WINDOW, "--actor", "staff-auditor")
    assert result.exit_code == 2 and "was revoked" in result.stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_to_file(data: Any, template: Template, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"export.{fmt}"
    result = run(data, "audit", "export", *WINDOW, "--actor", "staff-auditor",
                 "--format", fmt, "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"{len(expected(template))} records exported" in result.stderr
    assert ORIGIN in result.stderr
    if fmt == "json":
        seqs = [r["seq"] for r in json.loads(out.read_bytes())["rows"]]
    else:
        seqs = [int(r["seq"]) for r in csv.DictReader(io.StringIO(out.read_text()))]
    assert seqs == expected(template)


def test_log_held_by_a_server_needs_an_api_key(world: World) -> None:
    result = run(world.settings, "audit", "query", *WINDOW, "--actor", "staff-auditor", env={})
    assert result.exit_code == 2
    assert "INFERTRAIL_API_KEY" in result.stderr and "held by a running server" in result.stderr


def test_log_held_by_a_server_queries_its_api(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = FastAPI()
    app.include_router(compliance_router(world.service, world.users))
    key = world.keys["compliance"]

    def client(url: str) -> TestClient:
        assert url == f"http://{world.settings.host}:{world.settings.port}"
        return TestClient(app, headers={"Authorization": f"Bearer {key}"})

    monkeypatch.setattr(query_cli, "_http_client", client)
    result = run(world.settings, "audit", "query", "--subject", "bob-002", *WINDOW,
                 "--justification", JUSTIFY, "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    page = json.loads(result.stdout)
    pseudonym = world.template.pseudonyms["bob-002"]
    assert [r["seq"] for r in page["rows"]] == expected(world.template, subject=pseudonym)
    access = json.loads(next(iter(world.log.read(page["access_seq"], page["access_seq"] + 1)))[1])
    assert access["actor"] == {"id": "staff-compliance", "role": "compliance", "channel": "http"}
    out = tmp_path / "x.csv"
    exported = run(world.settings, "audit", "export", *WINDOW, "--format", "csv",
                   "--out", str(out))  # fmt: skip
    assert exported.exit_code == 0, exported.output
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == len(expected(world.template))
    refused = run(world.settings, "audit", "query", *WINDOW, "--event-type", "bogus")
    assert refused.exit_code == 2 and "event_type" in refused.stderr
