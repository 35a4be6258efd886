"""The service's ``/metrics`` scraped by a real Prometheus (Debian's /usr/bin/prometheus) and
queried back through its HTTP API, plus ``promtool check metrics`` on the exposition."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import (
    LOOPBACK,
    ManagedProcess,
    ProcessLauncher,
    RunningService,
    assert_loopback_only,
    clean_env,
    free_port,
    isolated_environment,
    poll,
    process_launcher,
    serving,
    settings_for,
    wait_http_ok,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

JOB = "infertrail"
GOOD_TEXTS = (
    "Great phone, the battery lasts for days.",
    "Terrible food and a rude waiter.",
    "The plot was thin but the acting saved it.",
    "Worst purchase I ever made.",
    "I love it, works perfectly.",
    "Not worth the money.",
)
# Rejected before inference: counted by the HTTP metrics, not by the inference histogram.
BAD_BODIES: tuple[dict[str, object], ...] = ({"text": ""}, {"text": 42})
N_GOOD_PER_HALF = 24


def tool(name: str) -> str:
    """Path of a Prometheus binary; fail (not skip) when the install step did not run."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found on PATH: run scripts/test-services.sh", pytrace=False)
    return path


@dataclass
class Prometheus:
    process: ManagedProcess
    base_url: str

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector."""
        r = httpx.get(f"{self.base_url}/api/v1/query", params={"query": promql}, timeout=5.0)
        if r.status_code != 200:
            self.process.fail(f"query {promql!r} answered {r.status_code}: {r.text}")
        body = r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def scalar(self, promql: str) -> float | None:
        """The single value of a one-element result, None while there is none."""
        result = self.query(promql)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])


def write_config(directory: Path, target_port: int) -> Path:
    """A Prometheus config scraping the service every second; checked with promtool."""
    config = directory / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    static_configs:\n"
        f"      - targets: ['{LOOPBACK}:{target_port}']\n"
    )
    check = subprocess.run(
        [tool("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, f"promtool check config failed:\n{check.stdout}{check.stderr}"
    return config


def start_prometheus(launcher: ProcessLauncher, work: Path, target_url: str) -> Prometheus:
    """Prometheus on loopback scraping ``target_url`` every second, ready and checked."""
    config = write_config(work, int(target_url.rsplit(":", 1)[1]))
    port = free_port()
    proc = launcher.start(
        "prometheus",
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{port}",
        ],
        env=clean_env(),
        cwd=work,
    )
    prom = Prometheus(proc, f"http://{LOOPBACK}:{port}")
    wait_http_ok(f"{prom.base_url}/-/ready", timeout_s=60, process=prom.process, what="/-/ready")
    assert_loopback_only(port, proc)
    return prom


@dataclass
class ScrapedRun:
    prometheus: Prometheus
    service: RunningService
    responses: list[httpx.Response]
    metrics_text: str


@pytest.fixture(scope="module")
def scraped_run(
    trained_models: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ScrapedRun]:
    """Service + Prometheus scraping it; traffic sent in two halves around the first scrape,
    so that ``rate()`` over the run sees an increase."""
    work = tmp_path_factory.mktemp("prometheus")
    with (
        isolated_environment(work),
        serving(settings_for(work / "service"), trained_models) as svc,
        svc.client() as client,
        process_launcher(work / "logs") as launcher,
    ):
        prom = start_prometheus(launcher, work, svc.base_url)

        def send_half() -> list[httpx.Response]:
            bodies = [{"text": GOOD_TEXTS[i % len(GOOD_TEXTS)]} for i in range(N_GOOD_PER_HALF)]
            return [client.post("/v1/sentiment", json=b) for b in [*bodies, *BAD_BODIES]]

        def served_count() -> float | None:
            return prom.scalar(f'sum(infertrail_inference_duration_seconds_count{{job="{JOB}"}})')

        responses = send_half()
        # Ready is not scraped: the first scrape comes some seconds later (target discovery).
        poll(served_count, timeout_s=30, process=prom.process, what="the first scrape")
        responses += send_half()
        served = sum(r.status_code == 200 for r in responses)
        poll(
            lambda: True if served_count() == served else None,
            timeout_s=30,
            process=prom.process,
            what=f"the inference count to reach {served}",
        )
        metrics_text = client.get("/metrics").text
        yield ScrapedRun(prom, svc, responses, metrics_text)


def test_the_traffic_was_as_planned(scraped_run: ScrapedRun) -> None:
    codes = Counter(r.status_code for r in scraped_run.responses)
    assert codes == {200: 2 * N_GOOD_PER_HALF, 422: 2 * len(BAD_BODIES)}, codes


def test_inference_count_equals_requests_served(scraped_run: ScrapedRun) -> None:
    served = sum(r.status_code == 200 for r in scraped_run.responses)
    count = scraped_run.prometheus.scalar(
        f'sum(infertrail_inference_duration_seconds_count{{job="{JOB}"}})'
    )
    assert count == served


def test_p99_inference_latency_is_a_finite_duration(scraped_run: ScrapedRun) -> None:
    p99 = scraped_run.prometheus.scalar(
        "histogram_quantile(0.99, sum by (le) "
        f'(rate(infertrail_inference_duration_seconds_bucket{{job="{JOB}"}}[1m])))'
    )
    assert p99 is not None
    # NaN means no increase was seen; +Inf would mean it fell in the open top bucket.
    assert math.isfinite(p99), p99
    assert 0 < p99 <= 10.0  # the largest explicit bucket boundary, seconds


def test_predictions_counter_has_model_and_label(scraped_run: ScrapedRun) -> None:
    series = scraped_run.prometheus.query(f'infertrail_predictions_total{{job="{JOB}"}}')
    by_label: Counter[str] = Counter()
    for s in series:
        m = s["metric"]
        assert m["infertrail_model_name"] == "sentiment"
        assert m["infertrail_model_version"] == "1.0.0"
        by_label[m["infertrail_prediction_label"]] += int(float(s["value"][1]))
    answered = Counter(r.json()["label"] for r in scraped_run.responses if r.status_code == 200)
    assert by_label == answered
    assert set(by_label) == {"negative", "positive"}


def test_stable_http_server_duration_is_exported(scraped_run: ScrapedRun) -> None:
    prom = scraped_run.prometheus
    series = prom.query(
        f'http_server_request_duration_seconds_count{{job="{JOB}",http_route="/v1/sentiment"}}'
    )
    by_status = {s["metric"]["http_response_status_code"]: float(s["value"][1]) for s in series}
    codes = Counter(str(r.status_code) for r in scraped_run.responses)
    assert by_status == {code: float(n) for code, n in codes.items()}
    # Every series is tagged with the stable semconv's attributes, not the old http_* ones.
    assert all(s["metric"]["http_request_method"] == "POST" for s in series)


def test_promtool_accepts_the_exposition(scraped_run: ScrapedRun) -> None:
    """``promtool check metrics`` exits 1 when it cannot parse the text and 3 when it only has
    lint findings (naming, missing _total, ...). Our exposition is lint-clean today, and we own
    the names, so any finding is a regression: we require exit 0 with no findings."""
    check = subprocess.run(
        [tool("promtool"), "check", "metrics"],
        input=scraped_run.metrics_text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = (check.stdout + check.stderr).strip()
    assert check.returncode == 0, f"promtool exit {check.returncode}:\n{findings}"
    assert findings == ""
    assert "infertrail_inference_duration_seconds_bucket" in scraped_run.metrics_text
