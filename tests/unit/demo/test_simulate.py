"""The traffic simulator: seeded bodies, batches aligned to windows, pacing, the command."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from infertrail.demo.simulate import (
    ENDPOINTS,
    RequestPacer,
    SimulationResult,
    bodies,
    held_out_credit,
    send_all,
    simulate,
    simulate_traffic,
)
from infertrail.models import credit, digits, sentiment
from infertrail.server.credit import CREDIT_SCORE_PATH
from infertrail.server.digits import DIGITS_PATH, pixel_problems
from infertrail.server.sentiment import SENTIMENT_PATH
from tests.integration.conftest import free_port


def test_endpoints_are_the_servers() -> None:
    assert ENDPOINTS == {
        "digits": DIGITS_PATH,
        "sentiment": SENTIMENT_PATH,
        "credit": CREDIT_SCORE_PATH,
    }


def test_clean_digits_cycle_through_the_held_out_images_without_repeats() -> None:
    test_images = digits.split().test_images
    out = bodies("digits", "clean", 3, len(test_images) + 10, seed=0)
    first = {tuple(b["pixels"]) for b in out[: len(test_images)]}
    assert first == {tuple(int(v) for v in row) for row in test_images}
    assert all(pixel_problems(b) == [] for b in out)
    assert all(isinstance(v, int) for v in out[0]["pixels"])


def test_bodies_are_seeded() -> None:
    assert bodies("digits", "rotation", 2, 20, seed=5) == bodies("digits", "rotation", 2, 20, 5)
    assert bodies("digits", "rotation", 2, 20, seed=5) != bodies("digits", "rotation", 2, 20, 6)
    assert bodies("sentiment", "imdb", 1, 20, seed=1) == bodies("sentiment", "imdb", 1, 20, 1)


def test_held_out_credit_is_each_held_out_applicant_once_with_its_label() -> None:
    data = credit.load_dataset()
    X_tr, X_te, _, y_te = credit.split(data)
    labelled = held_out_credit(seed=3)
    assert len(labelled) == len(y_te) == 200
    held_out = {tuple(row): str(label) for row, label in zip(X_te.tolist(), y_te, strict=True)}
    trained = {tuple(row) for row in X_tr.tolist()}
    seen = set()
    for body, truth in labelled:
        row = tuple(body[name] for name in credit.ATTRIBUTE_NAMES)
        assert credit.application_problems({k: body[k] for k in credit.ATTRIBUTE_NAMES}) == []
        assert held_out[row] == truth and row not in trained
        seen.add(body["applicant_id"])
    assert len(seen) == 200  # one applicant per application
    assert held_out_credit(20, seed=3) == labelled[:20]
    assert held_out_credit(20, seed=4) != labelled[:20]


@pytest.mark.parametrize("n", [-1, 201])
def test_held_out_credit_refuses_counts_it_cannot_give(n: int) -> None:
    with pytest.raises(ValueError, match=f"200 held-out applicants; asked for {n}"):
        held_out_credit(n)


def test_corrupted_digits_differ_from_clean_ones() -> None:
    clean = np.array([b["pixels"] for b in bodies("digits", "clean", 1, 100, seed=0)])
    noisy = np.array([b["pixels"] for b in bodies("digits", "gaussian_noise", 4, 100, seed=0)])
    assert np.mean(clean != noisy) > 0.5


def test_sentiment_traffic_comes_from_the_right_source() -> None:
    held_out = set(sentiment.split().test_texts)
    imdb = set(sentiment.load_sentences("imdb")[0])
    assert {b["text"] for b in bodies("sentiment", "clean", 1, 50)} <= held_out
    assert {b["text"] for b in bodies("sentiment", "imdb", 1, 50)} <= imdb
    assert len({b["text"] for b in bodies("sentiment", "clean", 1, len(held_out))}) == len(held_out)


@pytest.mark.parametrize(
    ("model", "scenario", "message"),
    [
        ("digits", "imdb", "model 'digits' has no scenario 'imdb'; valid: clean, gaussian_noise"),
        ("sentiment", "blur", "model 'sentiment' has no scenario 'blur'; valid: clean, imdb"),
        ("credit", "blur", "model 'credit' has no scenario 'blur'; valid: clean"),
        ("fraud", "clean", "unknown model 'fraud'; valid: digits, sentiment, credit"),
    ],
)
def test_unknown_scenarios_name_the_valid_ones(model: str, scenario: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bodies(model, scenario, 1, 1)


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        bodies("digits", "clean", 1, -1)


# -- sending ------------------------------------------------------------------------------------
class Recorder:
    """An httpx transport that records bodies and answers from a script."""

    def __init__(self, answer: Any = 200) -> None:
        self.answer = answer
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.lock:
            self.bodies.append(body)
        status = self.answer(body) if callable(self.answer) else self.answer
        if isinstance(status, Exception):
            raise status
        return httpx.Response(status, json={})


def client_for(recorder: Recorder) -> httpx.Client:
    return httpx.Client(base_url="http://svc", transport=httpx.MockTransport(recorder))


def test_each_batch_is_answered_before_the_next_starts() -> None:
    recorder = Recorder()
    batches = [[{"i": b * 10 + k} for k in range(10)] for b in range(5)]
    seen_at_end: list[set[int]] = []
    with client_for(recorder) as client:
        result = send_all(
            client,
            "/v1/x",
            batches,
            concurrency=4,
            on_batch=lambda i, r: seen_at_end.append({b["i"] for b in recorder.bodies}),
        )
    assert result.ok == result.sent == 50
    for b, seen in enumerate(seen_at_end):
        assert seen == set(range(10 * (b + 1)))


def test_failures_are_counted_not_raised() -> None:
    def answer(body: dict[str, Any]) -> Any:
        if body["i"] % 5 == 0:
            return httpx.ConnectError("refused")
        return 422 if body["i"] % 5 == 1 else 200

    with client_for(Recorder(answer)) as client:
        result = send_all(client, "/v1/x", [[{"i": i} for i in range(20)]], concurrency=3)
    assert result.sent == 20 and result.ok == 12 and result.failed == 8
    assert result.statuses == {200: 12, 422: 4}
    assert result.transport_errors == {"ConnectError": 4}
    assert len(result.latencies_s) == 16
    assert "sent 20  ok 12  failed 8  (HTTP 200: 12, 422: 4)" in result.summary()
    assert "4 x ConnectError (no answer)" in result.summary()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"concurrency": 0}, "concurrency must be at least 1"),
        ({"rate": 0.0}, "rate must be a positive number"),
        ({"rate": -2.0}, "rate must be a positive number"),
    ],
)
def test_send_all_refuses_bad_settings(kwargs: dict[str, Any], message: str) -> None:
    with client_for(Recorder()) as client, pytest.raises(ValueError, match=message):
        send_all(client, "/v1/x", [[{"i": 1}]], **kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_pacer_spaces_requests_one_over_rate_apart() -> None:
    t = FakeClock()
    pacer = RequestPacer(4.0, clock=t.clock, sleep=t.sleep)
    starts = []
    for _ in range(5):
        pacer.wait()
        starts.append(t.now)
    assert starts == pytest.approx([100.0, 100.25, 100.5, 100.75, 101.0])
    t.now += 10  # a slow answer: no burst to catch up beyond the next slot
    pacer.wait()
    pacer.wait()
    assert t.now == pytest.approx(111.25)


def test_no_rate_means_no_waiting() -> None:
    t = FakeClock()
    pacer = RequestPacer(None, clock=t.clock, sleep=t.sleep)
    for _ in range(3):
        pacer.wait()
    assert t.sleeps == []


def test_latency_quantiles_are_nearest_rank() -> None:
    result = SimulationResult(latencies_s=[i / 1000 for i in range(1, 101)])
    assert result.latency_ms(0.99) == pytest.approx(99.0)
    assert result.latency_ms(0.5) == pytest.approx(50.0)
    assert np.isnan(SimulationResult().latency_ms(0.5))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "exactly one of requests and windows"),
        ({"requests": 5, "windows": 1}, "exactly one of requests and windows"),
        ({"windows": 1, "window_size": 0}, "window_size must be at least 1"),
        ({"requests": 0}, "nothing to send"),
    ],
)
def test_simulate_traffic_refuses_bad_counts(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_traffic("http://127.0.0.1:9", model="digits", scenario="clean", **kwargs)


# -- the command, against a local HTTP server ---------------------------------------------------
class Service:
    """A stdlib HTTP server on loopback answering every POST with ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[tuple[str, dict[str, Any]]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                service.posts.append((self.path, json.loads(raw)))
                self.send_response(service.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def service() -> Iterator[Service]:
    svc = Service()
    svc.thread.start()
    yield svc
    svc.server.shutdown()
    svc.server.server_close()


def test_the_command_sends_whole_windows(service: Service, clean_env: None) -> None:
    args = ["--model", "digits", "--scenario", "blur", "--severity", "2", "--windows", "3"]
    result = CliRunner().invoke(simulate, [*args, "--window-size", "7", "--url", service.url])
    assert result.exit_code == 0, result.output
    assert len(service.posts) == 21
    assert {path for path, _ in service.posts} == {"/v1/digits"}
    assert f"simulating digits blur@2 -> {service.url}/v1/digits" in result.output
    assert "window 3/3: 21 ok, 0 failed" in result.output
    assert "sent 21  ok 21  failed 0" in result.output


def test_the_command_sends_sentiment_requests(service: Service, clean_env: None) -> None:
    args = ["--model", "sentiment", "--scenario", "imdb", "--requests", "5", "--rate", "1000"]
    result = CliRunner().invoke(simulate, [*args, "--url", service.url])
    assert result.exit_code == 0, result.output
    assert [path for path, _ in service.posts] == ["/v1/sentiment"] * 5
    assert all(set(body) == {"text"} for _, body in service.posts)


def test_the_default_is_one_window_of_the_configured_size(
    service: Service, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INFERTRAIL_DRIFT_WINDOW_SIZE", "6")
    result = CliRunner().invoke(simulate, ["--url", service.url])
    assert result.exit_code == 0, result.output
    assert len(service.posts) == 6


def test_failed_requests_fail_the_command(service: Service, clean_env: None) -> None:
    service.status = 503
    result = CliRunner().invoke(simulate, ["--requests", "4", "--url", service.url])
    assert result.exit_code == 1
    assert "4 of 4 requests failed" in result.output


def test_an_unreachable_service_fails_the_command(clean_env: None) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(simulate, ["--requests", "2", "--url", url])
    assert result.exit_code == 1
    assert "ConnectError (no answer)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "fog"], "model 'digits' has no scenario 'fog'"),
        (["--model", "sentiment", "--scenario", "blur"], "valid: clean, imdb"),
        (["--severity", "6"], "6 is not in the range 1<=x<=5"),
        (["--requests", "3", "--windows", "1"], "give --requests or --windows, not both"),
        (["--rate", "0"], "0.0 is not in the range x>0"),
        (["--model", "fraud"], "'fraud' is not one of"),
        (["--model", "sentiment", "--outcomes"], "outcomes are simulated for credit and digits"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str, clean_env: None) -> None:
    result = CliRunner().invoke(simulate, [*args, "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert message in result.output
