"""Screenshots of every console page, for the README: docs/screenshots/<page>.png (1280x800).

It starts the demo service (the one ``infertrail serve`` runs) in this process on a loopback
port, with its data in a temporary directory and freshly trained demo models (or ``--models``),
drives it with the traffic simulator (clean and shifted sentiment reviews, so the drift page has
a drifted window; credit applications with applicant ids, so the compliance pages have
subjects; digits images), logs in as an administrator through the login form in Debian's
Chromium and saves each page as the browser shows it. Nothing of the machine's configuration
is read: OTEL_*, INFERTRAIL_* and PHOENIX_* variables and ./infertrail.toml are ignored.

Needs the browser tools: scripts/browser-tools.sh (Chromium at /usr/bin/chromium).

Run: .venv/bin/python scripts/console-screenshots.py [--out DIR] [--models DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import ViewportSize, sync_playwright

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT: ViewportSize = {"width": 1280, "height": 800}
SUBJECT = "applicant-0042"  # the credit subject whose decisions the compliance page shows
_SCRUBBED = ("OTEL_", "INFERTRAIL_", "PHOENIX_")
_KEEP = {"OTEL_SEMCONV_STABILITY_OPT_IN"}


def page_urls(request_id: str) -> dict[str, str]:
    """File name (without .png) -> the console URL it shows, each page with content."""
    today = datetime.now(UTC).date()
    window = f"from={today.isoformat()}&to={(today + timedelta(days=1)).isoformat()}"
    return {
        "overview": "/ui/overview",
        "explorer": f"/ui/explorer?id={request_id}",
        "drift": "/ui/drift?model=sentiment",
        "slos": "/ui/slos",
        "compliance": f"/ui/compliance?{window}&model_name=credit",
        "compliance-export": f"/ui/compliance/export?{window}&model_name=credit",
        "compliance-trail": "/ui/compliance/trail",
        "auditlog": "/ui/auditlog",
    }


@contextmanager
def isolated_environment(scratch: Path) -> Iterator[None]:
    """The service reads no OTEL_/INFERTRAIL_ variable and no ./infertrail.toml of the machine."""
    saved = dict(os.environ)
    empty = scratch / "empty-infertrail.toml"
    empty.write_text("")
    for name in list(os.environ):
        if name.startswith(_SCRUBBED) and name not in _KEEP:
            del os.environ[name]
    os.environ["INFERTRAIL_CONFIG"] = str(empty)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def drive_traffic(base_url: str) -> str:
    """The demo traffic; returns the request id of one of SUBJECT's credit decisions."""
    from infertrail.demo.simulate import ENDPOINTS, TEXT_SCENARIOS, bodies, simulate_traffic

    runs = (
        ("sentiment", "clean", 300),
        ("sentiment", TEXT_SCENARIOS[1], 200),
        ("credit", "clean", 300),
    )
    for model, scenario, n in runs:
        result = simulate_traffic(base_url, model=model, scenario=scenario, requests=n, seed=11)
        print(f"  {model} {scenario}: {result.ok} of {result.sent} answered")
        if result.ok != n:
            raise SystemExit(f"traffic failed: {dict(result.statuses)}")
    request_id = ""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for body in bodies("credit", "clean", 1, 4, seed=5):
            r = client.post(ENDPOINTS["credit"], json={**body, "applicant_id": SUBJECT})
            r.raise_for_status()
            request_id = r.headers["x-request-id"]
    return request_id


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--models", type=Path, help="trained demo models (default: train now)")
    args = parser.parse_args()
    if not CHROMIUM.is_file():
        print(f"{CHROMIUM} is missing: run scripts/browser-tools.sh", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="infertrail-screens-") as tmp:
        scratch = Path(tmp)
        with isolated_environment(scratch):
            return shoot(scratch, args.out, args.models)


def shoot(scratch: Path, out: Path, models: Path | None) -> int:
    from infertrail.config import Settings
    from infertrail.models import train_all
    from infertrail.server.app import build_services, create_app

    settings = Settings(
        data_dir=scratch / "data",
        set_global_providers=False,
        traces_sampler="parentbased_always_on",
        drift_window_size=100,  # a few drift windows close with the traffic
    )
    settings.ensure_dirs()
    if models is None:
        print("training the demo models ...")
        train_all(settings.models_dir)
    else:
        shutil.copytree(models, settings.models_dir, dirs_exist_ok=True)
    services = build_services(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise SystemExit("the demo service did not start")
            time.sleep(0.05)
        print(f"demo service at {base_url}; sending traffic ...")
        request_id = drive_traffic(base_url)
        compliance = services.runtime.compliance
        if compliance is None:
            raise SystemExit("the demo service runs without compliance access")
        _, key = compliance.users.add("screenshots-admin", "admin")
        out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM))
            context = browser.new_context(base_url=base_url, viewport=VIEWPORT)
            page = context.new_page()
            page.goto("/ui/login")
            page.screenshot(path=out / "login.png")
            page.get_by_label("API key").fill(key)
            with page.expect_navigation():
                page.get_by_role("button", name="Log in").click()
            for name, url in page_urls(request_id).items():
                response = page.goto(url)
                status = response.status if response is not None else "no answer"
                if status != 200:
                    raise SystemExit(f"{url}: {status}")
                path = out / f"{name}.png"
                page.screenshot(path=path)
                print(
                    f"  {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path}"
                )
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        services.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
