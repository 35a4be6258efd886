"""The traffic simulator: drives a running service over HTTP with clean or shifted inputs.

``infertrail simulate --model digits --scenario blur --severity 3 --windows 5`` sends held-out
digits (corrupted by :mod:`infertrail.demo.corruptions`) to ``POST /v1/digits``;
``--model sentiment --scenario imdb|clean`` sends imdb sentences (a real domain shift: the model
was trained on amazon and yelp reviews) or held-out amazon and yelp sentences to
``POST /v1/sentiment``. Traffic is seeded, so a run can be repeated exactly.

With ``--windows K`` the requests go out in K batches of ``--window-size``, each answered before
the next starts: with a sample rate of 1 every drift window of the service then holds exactly
one batch, whatever the concurrency. ``--rate`` caps the requests per second.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
import numpy as np

from infertrail.commandline import settings_of
from infertrail.config import Settings
from infertrail.demo.corruptions import SCENARIOS as IMAGE_SCENARIOS
from infertrail.demo.corruptions import corrupt
from infertrail.demo.outcomes import (
    CREDIT_LABELS,
    DIGITS_LABELS,
    Degradation,
    OutcomeEmitter,
    credit_samples,
    http_sender,
)
from infertrail.models import credit, digits, sentiment
from infertrail.progress import progress

#: The endpoint of each model (the constants of infertrail.server, without importing FastAPI).
CREDIT = "credit"
ENDPOINTS = {digits.NAME: "/v1/digits", sentiment.NAME: "/v1/sentiment", CREDIT: "/v1/credit/score"}
TEXT_SCENARIOS = ("clean", sentiment.SHIFTED_SOURCE)
SCENARIOS: dict[str, tuple[str, ...]] = {
    digits.NAME: IMAGE_SCENARIOS,
    sentiment.NAME: TEXT_SCENARIOS,
    CREDIT: ("clean",),
}


def check_scenario(model: str, scenario: str) -> None:
    """Raise ValueError naming the valid choices unless ``model`` has ``scenario``."""
    if model not in SCENARIOS:
        raise ValueError(f"unknown model {model!r}; valid: {', '.join(SCENARIOS)}")
    if scenario not in SCENARIOS[model]:
        raise ValueError(
            f"model {model!r} has no scenario {scenario!r}; valid: {', '.join(SCENARIOS[model])}"
        )


def _cycle(n_items: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` indices into ``n_items``: seeded shuffles back to back, no repeat within one."""
    if n < 0:
        raise ValueError(f"the number of requests must be >= 0, got {n}")
    reps = -(-n // n_items)
    shuffles = [rng.permutation(n_items) for _ in range(reps)]
    return np.concatenate(shuffles)[:n] if shuffles else np.empty(0, dtype=np.int64)


def digits_bodies(scenario: str, severity: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` request bodies: held-out digits with ``scenario`` applied at ``severity``."""
    return [body for body, _ in labelled_digits(scenario, severity, n, seed)]


def labelled_digits(
    scenario: str, severity: int, n: int, seed: int = 0
) -> list[tuple[dict[str, Any], str]]:
    """Held-out digits with ``scenario`` applied, each with its true digit (the outcome)."""
    check_scenario(digits.NAME, scenario)
    rng = np.random.default_rng(seed)
    data = digits.split()
    order = _cycle(len(data.test_images), n, rng)
    picked = corrupt(data.test_images[order], scenario, severity, rng)
    return [
        ({"pixels": [int(v) for v in row]}, str(int(truth)))
        for row, truth in zip(picked, data.test_labels[order], strict=True)
    ]


def labelled_credit(n: int, seed: int = 0) -> list[tuple[dict[str, Any], str]]:
    """German credit applications from a pool of 50 applicants, each with its label (1 good)."""
    samples = credit_samples(seed)
    out = []
    for i in range(n):
        application, truth = next(samples)
        out.append(({"applicant_id": f"sim-applicant-{seed}-{i % 50}", **application}, str(truth)))
    return out


def held_out_credit(n: int | None = None, seed: int = 0) -> list[tuple[dict[str, Any], str]]:
    """``n`` (default: all 200) of the credit model's held-out applicants, never trained on, in
    a seeded order, each once, with their label (1 good): clean traffic, as the model's
    monitoring references expect.

    The training rows would not do: the model is more accurate on them than on new applicants,
    and the multivariate drift statistics are fitted on them, so a window of them looks closer
    to the reference than new applicants do.
    """
    _, X_te, _, y_te = credit.split(credit.load_dataset())
    if n is not None and not 0 <= n <= len(y_te):
        raise ValueError(f"the credit model has {len(y_te)} held-out applicants; asked for {n}")
    order = np.random.default_rng(seed).permutation(len(y_te))[:n]
    return [
        (
            {"applicant_id": f"held-out-applicant-{seed}-{i}", **credit.as_application(X_te[i])},
            str(int(y_te[i])),
        )
        for i in order
    ]


def simulate_outcomes(
    base_url: str,
    *,
    model: str,
    scenario: str,
    severity: int,
    requests: int,
    delay_s: float = 0.0,
    degradation: Degradation | None = None,
    seed: int = 0,
    timeout_s: float = 30.0,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[SimulationResult, OutcomeEmitter]:
    """Send ``requests`` requests of ``model`` one by one and post each answered one's true
    outcome to ``/v1/outcomes`` once ``delay_s`` has passed (credit and digits: their data's
    labels; ``degradation`` makes some outcomes wrong so a performance drop can be shown);
    ``on_progress`` as for :func:`send_with_outcomes`."""
    if model == digits.NAME:
        labelled, labels = labelled_digits(scenario, severity, requests, seed), DIGITS_LABELS
    elif model == CREDIT:
        labelled, labels = labelled_credit(requests, seed), CREDIT_LABELS
    else:
        raise ValueError(f"outcomes are simulated for credit and digits, not {model!r}")
    return send_with_outcomes(
        base_url,
        ENDPOINTS[model],
        labelled,
        labels,
        delay_s=delay_s,
        degradation=degradation,
        timeout_s=timeout_s,
        on_progress=on_progress,
    )


def send_with_outcomes(
    base_url: str,
    path: str,
    labelled: Sequence[tuple[dict[str, Any], str]],
    labels: Sequence[str],
    *,
    delay_s: float = 0.0,
    degradation: Degradation | None = None,
    timeout_s: float = 30.0,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[SimulationResult, OutcomeEmitter]:
    """POST each (body, truth) of ``labelled`` to ``path`` one by one and post each answered
    one's truth to ``/v1/outcomes`` once ``delay_s`` has passed (the rest when all are sent).
    ``on_progress`` is called with 1 after each request, answered or not."""
    result = SimulationResult()
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        emitter = OutcomeEmitter(
            http_sender(client), labels, delay_s=delay_s, degradation=degradation
        )
        for body, truth in labelled:
            t0 = time.perf_counter()
            try:
                r = client.post(path, json=body)
            except httpx.TransportError as exc:
                result.transport_errors[type(exc).__name__] += 1
                continue
            finally:
                if on_progress is not None:
                    on_progress(1)
            result.statuses[r.status_code] += 1
            if r.status_code == 200:
                result.latencies_s.append(time.perf_counter() - t0)
                emitter.record(r.json()["request_id"], truth)
            emitter.pump()
        emitter.drain()
        # An outcome can overtake its prediction (indexed off the request path): the service
        # reports it unknown and the emitter sends it again, a retry interval later.
        for _ in range(emitter.retries):
            if not emitter.waiting:
                break
            time.sleep(emitter.retry_s)
            emitter.drain()
    return result, emitter


def sentiment_bodies(scenario: str, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` request bodies: held-out amazon/yelp sentences (clean) or imdb sentences."""
    check_scenario(sentiment.NAME, scenario)
    if scenario == "clean":
        texts = sentiment.split().test_texts
    else:
        texts, _ = sentiment.load_sentences(sentiment.SHIFTED_SOURCE)
    order = _cycle(len(texts), n, np.random.default_rng(seed))
    return [{"text": texts[i]} for i in order]


def bodies(model: str, scenario: str, severity: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` request bodies of ``model``'s ``scenario`` (severity applies to image scenarios)."""
    check_scenario(model, scenario)
    if model == digits.NAME:
        return digits_bodies(scenario, severity, n, seed)
    if model == CREDIT:
        return [body for body, _ in labelled_credit(n, seed)]
    return sentiment_bodies(scenario, n, seed)


@dataclass
class SimulationResult:
    """What happened to the requests of one run."""

    statuses: Counter[int] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport_errors.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def failed(self) -> int:
        return self.sent - self.ok

    def latency_ms(self, q: float) -> float:
        """Nearest-rank quantile ``q`` of the latencies of answered requests, in ms."""
        if not self.latencies_s:
            return float("nan")
        ordered = sorted(self.latencies_s)
        rank = max(1, int(np.ceil(q * len(ordered))))
        return ordered[rank - 1] * 1000.0

    def summary(self) -> str:
        """One line per outcome, for the command line."""
        codes = ", ".join(f"{code}: {k}" for code, k in sorted(self.statuses.items())) or "-"
        lines = [f"sent {self.sent}  ok {self.ok}  failed {self.failed}  (HTTP {codes})"]
        for kind, k in sorted(self.transport_errors.items()):
            lines.append(f"  {k} x {kind} (no answer)")
        if self.latencies_s:
            median = statistics.median(self.latencies_s) * 1000.0
            lines.append(f"latency p50 {median:.2f} ms  p99 {self.latency_ms(0.99):.2f} ms")
        return "\n".join(lines)


class RequestPacer:
    """Spaces request starts ``1 / rate`` seconds apart across all worker threads."""

    def __init__(
        self,
        rate: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._interval = 0.0 if rate is None else 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = clock()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Block until this caller's slot: each call gets the next one, 1 / rate later."""
        if not self._interval:
            return
        with self._lock:
            start = max(self._next, self._clock())
            self._next = start + self._interval
        delay = start - self._clock()
        if delay > 0:
            self._sleep(delay)


def send_all(
    client: httpx.Client,
    path: str,
    batches: Sequence[Sequence[dict[str, Any]]],
    *,
    concurrency: int = 4,
    rate: float | None = None,
    on_batch: Callable[[int, SimulationResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """POST every body of each batch to ``path``; a batch is answered before the next starts.

    ``on_batch`` is called after each batch, ``on_progress`` with 1 after each request
    (answered or not), from the sending threads.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    result = SimulationResult()
    lock = threading.Lock()
    pacer = RequestPacer(rate)

    def send(body: dict[str, Any]) -> None:
        pacer.wait()
        t0 = time.perf_counter()
        try:
            status = client.post(path, json=body).status_code
        except httpx.TransportError as exc:
            with lock:
                result.transport_errors[type(exc).__name__] += 1
            return
        finally:
            if on_progress is not None:
                on_progress(1)
        elapsed = time.perf_counter() - t0
        with lock:
            result.statuses[status] += 1
            result.latencies_s.append(elapsed)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="infertrail-simulate") as pool:
        for i, batch in enumerate(batches):
            list(pool.map(send, batch))
            if on_batch is not None:
                on_batch(i, result)
    return result


def simulate_traffic(
    base_url: str,
    *,
    model: str,
    scenario: str,
    severity: int = 3,
    requests: int | None = None,
    windows: int | None = None,
    window_size: int = 500,
    rate: float | None = None,
    concurrency: int = 4,
    seed: int = 0,
    timeout_s: float = 30.0,
    on_batch: Callable[[int, SimulationResult], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> SimulationResult:
    """Drive the service at ``base_url``: ``requests`` requests, or ``windows`` full windows
    (``on_batch``, ``on_progress``: as for :func:`send_all`)."""
    if (requests is None) == (windows is None):
        raise ValueError("give exactly one of requests and windows")
    if window_size < 1:
        raise ValueError(f"window_size must be at least 1, got {window_size}")
    count = requests if requests is not None else (windows or 0) * window_size
    if count < 1:
        raise ValueError(f"nothing to send: requests={requests}, windows={windows}")
    traffic = bodies(model, scenario, severity, count, seed)
    size = window_size if windows is not None else count
    batches = [traffic[i : i + size] for i in range(0, count, size)]
    with httpx.Client(base_url=base_url, timeout=timeout_s) as client:
        return send_all(
            client,
            ENDPOINTS[model],
            batches,
            concurrency=concurrency,
            rate=rate,
            on_batch=on_batch,
            on_progress=on_progress,
        )


def _default_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


@click.command("simulate")
@click.option(
    "--model", type=click.Choice(sorted(SCENARIOS)), default=digits.NAME, show_default=True
)
@click.option(
    "--scenario",
    default="clean",
    show_default=True,
    help=f"digits: {', '.join(IMAGE_SCENARIOS)}; sentiment: {', '.join(TEXT_SCENARIOS)}.",
)
@click.option(
    "--severity",
    type=click.IntRange(1, 5),
    default=3,
    show_default=True,
    help="Strength of an image corruption (ignored by clean and the text scenarios).",
)
@click.option("--requests", "n_requests", type=click.IntRange(min=1), help="Requests to send.")
@click.option(
    "--windows", type=click.IntRange(min=1), help="Full drift windows to send (default 1)."
)
@click.option(
    "--window-size",
    type=click.IntRange(min=1),
    help="Requests per window (default: the drift_window_size setting).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Requests per second at most (default: as fast as the service answers).",
)
@click.option("--concurrency", type=click.IntRange(1, 256), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the traffic.")
@click.option("--url", help="Base URL of the service (default: http://<host>:<port> settings).")
@click.option(
    "--outcomes",
    is_flag=True,
    help="credit, digits: also post each answered request's true outcome to /v1/outcomes.",
)
@click.option(
    "--outcome-delay",
    type=click.FloatRange(min=0),
    default=0.0,
    help="Seconds before each outcome.",
)
@click.option(
    "--degrade-after",
    type=click.IntRange(min=0),
    help="With --outcomes: after this many outcomes, make some wrong (a performance drop).",
)
@click.option(
    "--degrade-rate",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of outcomes made wrong after --degrade-after.",
)
@click.pass_context
def simulate(
    ctx: click.Context,
    model: str,
    scenario: str,
    severity: int,
    n_requests: int | None,
    windows: int | None,
    window_size: int | None,
    rate: float | None,
    concurrency: int,
    seed: int,
    url: str | None,
    outcomes: bool,
    outcome_delay: float,
    degrade_after: int | None,
    degrade_rate: float,
) -> None:
    """Drive a running service with clean or shifted traffic (see infertrail.demo.simulate)."""
    try:
        check_scenario(model, scenario)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--scenario") from None
    if n_requests is not None and windows is not None:
        raise click.UsageError("give --requests or --windows, not both")
    settings = settings_of(ctx)
    base_url = url or _default_url(settings)
    size = window_size or settings.drift_window_size
    if n_requests is None and windows is None:
        windows = 1

    def window_done(i: int, so_far: SimulationResult) -> None:
        if windows is not None:
            click.echo(f"window {i + 1}/{windows}: {so_far.ok} ok, {so_far.failed} failed")

    label = scenario if scenario == "clean" or model != digits.NAME else f"{scenario}@{severity}"
    click.echo(f"simulating {model} {label} -> {base_url}{ENDPOINTS[model]}")
    if outcomes:
        if model not in (CREDIT, digits.NAME):
            raise click.BadParameter(
                "outcomes are simulated for credit and digits", param_hint="--outcomes"
            )
        degradation = None if degrade_after is None else Degradation(degrade_after, degrade_rate)
        count = n_requests or (windows or 1) * size
        with progress(count, "simulating", "requests") as bar:
            result, emitter = simulate_outcomes(
                base_url,
                model=model,
                scenario=scenario,
                severity=severity,
                requests=count,
                delay_s=outcome_delay,
                degradation=degradation,
                seed=seed,
                on_progress=bar.advance,
            )
        click.echo(result.summary())
        click.echo(
            f"outcomes: {emitter.emitted} sent, {emitter.degraded} made wrong, "
            f"{emitter.lost} unknown to the service"
        )
        if result.failed:
            raise click.ClickException(f"{result.failed} of {result.sent} requests failed")
        return
    with progress(n_requests or (windows or 1) * size, "simulating", "requests") as bar:
        result = simulate_traffic(
            base_url,
            model=model,
            scenario=scenario,
            severity=severity,
            requests=n_requests,
            windows=windows,
            window_size=size,
            rate=rate,
            concurrency=concurrency,
            seed=seed,
            on_batch=window_done,
            on_progress=bar.advance,
        )
    click.echo(result.summary())
    if result.failed:
        raise click.ClickException(f"{result.failed} of {result.sent} requests failed")
