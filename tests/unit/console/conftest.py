"""Shared fixtures of the console's unit tests: a service in-process with the console mounted,
an API key per role, and a logged-in client."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from infertrail.config import Settings
from infertrail.events import ModelInfo
from infertrail.runtime.asgi import instrument
from infertrail.runtime.assembly import Runtime

ROLES = ("engineer", "auditor", "compliance", "admin")


@dataclass
class ConsoleApp:
    """A running service (``runtime``) with its console, a test client, a key per role."""

    client: TestClient
    runtime: Runtime
    keys: dict[str, str]

    def login(self, role: str) -> TestClient:
        """Log the client in as the user of ``role`` (its session cookie is kept)."""
        page = self.client.get("/ui/login")
        token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
        assert token is not None, page.text[:200]
        r = self.client.post(
            "/ui/login",
            data={"api_key": self.keys[role], "login_csrf": token.group(1), "next": ""},
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text[:200]
        return self.client


@pytest.fixture
def console_app_factory(
    tmp_path: Path,
) -> Iterator[Callable[..., ConsoleApp]]:
    """Start a service with ``models`` and settings overrides; closed at the test's end."""
    clients: list[TestClient] = []

    def start(models: tuple[ModelInfo, ...] = (), **overrides: object) -> ConsoleApp:
        settings = Settings(
            data_dir=tmp_path / "data",
            set_global_providers=False,
            telemetry_files=False,
            **overrides,  # type: ignore[arg-type]
        )
        app = FastAPI()
        runtime = instrument(app, settings, models=models, console=True)
        assert runtime.compliance is not None
        keys = {r: runtime.compliance.users.add(f"u-{r}", r)[1] for r in ROLES}
        client = TestClient(app, base_url="http://testserver")
        client.__enter__()
        clients.append(client)
        return ConsoleApp(client, runtime, keys)

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def console_app(console_app_factory: Callable[..., ConsoleApp]) -> ConsoleApp:
    """A service without served models (traffic through ``runtime.observe``)."""
    return console_app_factory()
