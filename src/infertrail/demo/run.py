"""``infertrail demo``: train, serve on localhost, drive traffic, summarise what was recorded.

After the mixed traffic, drift monitoring is shown at work: a clean and a noisy window of
digits, one window of credit applications whose true outcomes are fed back, and for every model
its last window as the detector and the window analyzers judged it (:mod:`.monitoring`).

With the ``[llm]`` extra (torch) and the ``openai`` client installed, the demo LLM is trained
once (~40 s; reused by later runs), served at ``/v1/chat/completions`` and driven through the
real ``openai`` client (:func:`drive_llm`): completions, streams and a few streams the client
hangs up on, then one streamed call's time to first token, tokens per second, token cost (a
made-up demo price) and trace are shown. Without them, one line says why the LLM is skipped.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.proofs import make_evidence
from infertrail.audit.verify import verify_log
from infertrail.config import Settings
from infertrail.cost.prices import load_price_table
from infertrail.demo.monitoring import RealizedPerformance, monitoring_lines
from infertrail.demo.outcomes import CREDIT_LABELS
from infertrail.demo.simulate import held_out_credit, send_all, send_with_outcomes, simulate_traffic
from infertrail.events import rfc3339_micros
from infertrail.models import (
    MIN_ANSWER_TOKENS,
    TRAINERS,
    credit,
    digits,
    llm,
    llm_room,
    review_request,
    sentiment,
    train_llm,
)
from infertrail.outcomes.api import PERFORMANCE_PATH
from infertrail.progress import Bar, progress
from infertrail.server.app import DemoService, build_services, create_app
from infertrail.server.credit import CREDIT_SCORE_PATH
from infertrail.server.llm import CHAT_COMPLETIONS_PATH
from infertrail.server.sentiment import SENTIMENT_PATH
from infertrail.telemetry.files import LOGS_FILE, METRICS_FILE, TRACES_FILE
from infertrail.telemetry.readback import RequestTelemetry, find_request, format_request
from infertrail.telemetry.setup import INFERENCE_LOG_FILE

#: The credit window's outcomes fall due after the whole window, so they go out in one batch,
#: as ground truth arriving late would.
OUTCOME_DELAY_S = 3600.0
#: LLM calls the demo makes: every third streamed, and CANCELLED_STREAMS streams cut short.
LLM_CALLS = 50
CANCELLED_STREAMS = 3
#: A made-up price for the demo LLM, in the range of small hosted models (USD per million
#: tokens), so that token cost shows up in ``infertrail cost report``; not a real price.
DEMO_PRICES = """\
# infertrail demo: made-up prices (USD); the resource rates are OpenCost's defaults.
[[versions]]
version = "demo"
effective_from = "1970-01-01T00:00:00Z"

[versions.models.demo-llm]
per_million_input_tokens = 0.15
per_million_output_tokens = 0.60
"""


@dataclass
class Outcome:
    status: int
    latency_s: float
    request_id: str
    path: str
    audit_seq: int | None
    decision: str | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def traffic(n: int) -> list[tuple[str, dict[str, object]]]:
    """Review sentences (a share from the shifted imdb source), credit applications from a pool
    of 20 applicants, and ~4% bad requests, as (path, body) pairs."""
    clean = sentiment.split().test_texts
    shifted, _ = sentiment.load_sentences(sentiment.SHIFTED_SOURCE)
    applicants = credit.load_dataset().X
    bad: list[tuple[str, dict[str, object]]] = [
        (SENTIMENT_PATH, {"text": ""}),
        (SENTIMENT_PATH, {"text": 42}),
        (CREDIT_SCORE_PATH, {"applicant_id": "applicant-1", "checking_status": "A99"}),
        (SENTIMENT_PATH, {"text": "x" * 20_000}),
    ]
    out: list[tuple[str, dict[str, object]]] = []
    for i in range(n):
        if i % 25 == 24:
            out.append(bad[(i // 25) % len(bad)])
        elif i % 3 == 2:
            application = credit.as_application(applicants[i % len(applicants)])
            out.append((CREDIT_SCORE_PATH, {"applicant_id": f"applicant-{i % 20}", **application}))
        elif i % 5 == 4:
            out.append((SENTIMENT_PATH, {"text": shifted[i % len(shifted)]}))
        else:
            out.append((SENTIMENT_PATH, {"text": clean[i % len(clean)]}))
    return out


class _Server(threading.Thread):
    def __init__(self, server: uvicorn.Server) -> None:
        super().__init__(name="infertrail-demo-server", daemon=True)
        self.server = server

    def run(self) -> None:
        self.server.run()


def run_demo(settings: Settings, *, n_requests: int, port: int, keep_serving: bool) -> int:
    """The whole demo; returns the process exit code."""
    # The credit demo keeps the applications it scored, encrypted per applicant, for the
    # retention period (off by default everywhere else; see docs/privacy.md).
    settings = settings.model_copy(update={"raw_payloads_enabled": True})
    settings.ensure_dirs()
    if settings.cost_prices_file is None:
        prices = settings.data_dir / "cost" / "demo-prices.toml"
        prices.parent.mkdir(parents=True, exist_ok=True)
        prices.write_text(DEMO_PRICES)
        settings = settings.model_copy(update={"cost_prices_file": prices})
    step = _Steps()
    for name, trainer in TRAINERS.items():
        step(f"training {name}")
        info = trainer(settings.models_dir)
        print(f"trained  {info.name} {info.version}  sha256={info.sha256[:16]}...")
    skipped = llm_missing()
    if skipped is None:
        prepare_llm(settings.models_dir)
    step("starting the service")
    services = build_services(settings)
    port = port or free_port()
    app = create_app(services, freeze_gc=True)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = _Server(uvicorn.Server(config))
    server.start()
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for _ in range(200):
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        print(f"serving  {base}  (OpenAPI docs: {base}/docs, metrics: {base}/metrics)")

        def send(request: tuple[str, dict[str, object]]) -> Outcome:
            path, body = request
            t0 = time.perf_counter()
            r = client.post(path, json=body)
            body_out = r.json() if r.status_code == 200 else {}
            return Outcome(
                r.status_code,
                time.perf_counter() - t0,
                r.headers["x-request-id"],
                path,
                body_out.get("audit_seq"),
                body_out.get("decision"),
            )

        step(f"sending {n_requests} requests (sentiment, credit, ~4% bad on purpose)")
        with (
            progress(n_requests, "mixed traffic", "requests") as bar,
            ThreadPoolExecutor(4) as pool,
        ):
            outcomes = list(pool.map(lambda r: _counted(send(r), bar), traffic(n_requests)))
    drift_lines = []
    if services.runtime.drift:
        step("drift monitoring: digits (a clean, then a noisy window), credit (with outcomes)")
        drift_lines = drive_monitoring(base, services, settings)
    model = services.llm
    llm_calls = []
    if model is not None:
        step(f"{LLM_CALLS} calls to {llm.NAME} through the openai client")
        llm_calls = drive_llm(base, model)
    if keep_serving:
        print(
            f"console  {base}/ui  (log in with a key from `infertrail users add NAME --role admin`)"
        )
        print("serving until Ctrl-C ...")
        try:
            while server.is_alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    step("stopping the service (drains the events, flushes the exporters)")
    server.server.should_exit = True
    server.join(timeout=30)
    services.close()  # drains the event queue and flushes every exporter
    print_summary(settings, outcomes)
    for line in drift_lines:
        print(line)
    if skipped is not None:
        print(f"\nLLM part skipped: {skipped}")
    else:
        print_llm(settings, llm_calls)
    d = f"infertrail --data-dir {settings.data_dir}"
    print(
        "\nthe web console (docs/console.md): a key to log in with, then the service:\n"
        f"  {d} users add me --role admin\n"
        f"  {d} serve   ->   http://127.0.0.1:8000/ui\n"
        f"  a report:  {d} report compliance --from 2026-01-01 --to 2100-01-01 "
        "--actor me --out evidence.html"
    )
    return 0


class _Steps:
    """A status line per phase, with the seconds since the demo started: training, starting
    the service and the traffic take ~35 s (more with the LLM) before the summary."""

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def __call__(self, text: str) -> None:
        print(f"[{time.monotonic() - self._t0:5.1f} s] {text}", flush=True)


def _counted(outcome: Outcome, bar: Bar) -> Outcome:
    bar.advance()
    return outcome


def llm_missing() -> str | None:
    """Why the demo LLM cannot be shown here (None: it can)."""
    for module, extra in (("torch", "llm"), ("transformers", "llm"), ("openai", "openai")):
        if importlib.util.find_spec(module) is None:
            return (
                f"{module} is not installed (pip install 'infertrail[{extra}]', or run "
                "`make demo`, which installs torch's CPU build into .venv-llm)"
            )
    return None


def prepare_llm(models_dir: Path) -> None:
    """The demo LLM trained once with its drift reference; later runs reuse it (checked by
    its sha256 when the service loads it)."""
    if (models_dir / llm.NAME / llm.TRAIN_FILE).is_file():
        print(f"using    {llm.NAME} trained before ({models_dir / llm.NAME})")
        return
    print(f"training {llm.NAME} once (~45 s with its drift reference; later runs reuse it)")
    t0 = time.monotonic()
    info = train_llm(models_dir)
    took = time.monotonic() - t0
    print(f"trained  {info.name} {info.version}  sha256={info.sha256[:16]}...  ({took:.0f} s)")


@dataclass
class LlmCall:
    """One call of the demo's LLM traffic, as its client saw it."""

    request_id: str
    stream: bool
    cancelled: bool
    ttft_s: float | None = None  # to the first content chunk (streams)
    seconds: float = 0.0  # to the last byte
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens per second after the first one (streams)."""
        if self.ttft_s is None or self.completion_tokens < 2 or self.seconds <= self.ttft_s:
            return None
        return (self.completion_tokens - 1) / (self.seconds - self.ttft_s)


def drive_llm(base: str, model: llm.DemoLLM, calls: int = LLM_CALLS) -> list[LlmCall]:
    """The demo LLM through the real ``openai`` client: held-out amazon and yelp reviews as
    review requests (:func:`~infertrail.models.review_request`; those that leave ``model``
    room for an answer), every third call streamed with usage, the first CANCELLED_STREAMS
    streams hung up on after three chunks."""
    import openai

    reviews = [r for r in sentiment.split().test_texts if llm_room(model, r) >= MIN_ANSWER_TOKENS]
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="demo", max_retries=0)

    def one(i: int) -> LlmCall:
        messages: Any = review_request(reviews[i % len(reviews)])
        t0 = time.perf_counter()
        if i % 3:
            raw = client.chat.completions.with_raw_response.create(
                model=llm.NAME, messages=messages, seed=i, user=f"reader-{i % 10}"
            )
            c = raw.parse()
            usage = c.usage
            assert usage is not None
            return LlmCall(
                raw.headers["x-request-id"],
                False,
                False,
                seconds=time.perf_counter() - t0,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
            )
        cancel = i // 3 < CANCELLED_STREAMS
        stream = client.chat.completions.create(
            model=llm.NAME,
            messages=messages,
            seed=i,
            user=f"reader-{i % 10}",
            temperature=2.0 if cancel else 1.0,  # near-uniform: long enough to hang up on
            stream=True,
            stream_options={"include_usage": True},
        )
        out = LlmCall("", True, cancel)
        pieces = 0
        for chunk in stream:
            out.request_id = chunk.id.removeprefix("chatcmpl-")
            if chunk.choices and chunk.choices[0].delta.content:
                pieces += 1
                if out.ttft_s is None:
                    out.ttft_s = time.perf_counter() - t0
            if chunk.usage is not None:
                out.prompt_tokens = chunk.usage.prompt_tokens
                out.completion_tokens = chunk.usage.completion_tokens
            if cancel and pieces == 3:
                break
        stream.close()
        out.seconds = time.perf_counter() - t0
        return out

    try:
        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, range(calls)))
    finally:
        client.close()


def print_llm(settings: Settings, calls: list[LlmCall]) -> None:
    """What the LLM traffic was, one streamed call's numbers and its trace, where to look."""
    streams = [c for c in calls if c.stream and not c.cancelled and c.tokens_per_s]
    print(
        f"\ndemo LLM ({llm.NAME}, POST {CHAT_COMPLETIONS_PATH}, driven by the openai client): "
        f"{len(calls)} calls, {sum(c.stream for c in calls)} streamed, "
        f"{sum(c.cancelled for c in calls)} hung up on after 3 chunks (recorded as cancelled)"
    )
    if not streams:
        print("  no streamed call produced two tokens; nothing to show")
        return
    ttfts = sorted(c.ttft_s or 0.0 for c in streams)
    rates = sorted(c.tokens_per_s or 0.0 for c in streams)
    print(
        f"  streams: time to first token median {statistics.median(ttfts) * 1000:.1f} ms, "
        f"{statistics.median(rates):.0f} tokens/s median (client side, HTTP on loopback)"
    )
    call = max(streams, key=lambda c: c.completion_tokens)
    assert settings.cost_prices_file is not None
    price = load_price_table(settings.cost_prices_file).at(time.time_ns())
    cost = price.cost_of(
        llm.NAME,
        requests=0,
        cpu_seconds=0.0,
        tokens_in=call.prompt_tokens,
        tokens_out=call.completion_tokens,
    ).tokens
    print(
        f"  one stream: TTFT {(call.ttft_s or 0.0) * 1000:.1f} ms, "
        f"{call.tokens_per_s or 0.0:.0f} tokens/s, {call.prompt_tokens} + "
        f"{call.completion_tokens} tokens = ${cost:.8f} at the demo's made-up price "
        f"({price.model(llm.NAME).per_million_input_tokens} / "
        f"{price.model(llm.NAME).per_million_output_tokens} USD per million in / out)"
    )
    view = find_request(settings.telemetry_dir, call.request_id)
    if view is not None:
        print("  its trace (infertrail trace):")
        for line in format_request(view).splitlines():
            print(f"    {line}")
    d = f"infertrail --data-dir {settings.data_dir}"
    print(f"  more:   {d} trace {call.request_id}")
    print(f"  cost:   {d} cost report --by model   (prices: {settings.cost_prices_file})")
    print(
        f"  where:  {settings.telemetry_dir / INFERENCE_LOG_FILE} (gen_ai: tokens, ttft_ms, "
        "outcome), /metrics (gen_ai_server_time_to_first_token_seconds, ...), the audit log "
        "(prompt and answer as keyed digests, the end user pseudonymized)"
    )


def flush_drift(services: DemoService) -> None:
    """Judge what the traffic so far left in every model's open window (from ``min_samples``)."""
    services.monitor.flush()
    for monitor in services.runtime.drift.values():
        monitor.flush()


def drive_monitoring(base: str, services: DemoService, settings: Settings) -> list[str]:
    """Judge the mixed traffic's open windows, drive digits (clean, then noisy) and credit
    (one window, with outcomes), then describe the last window of every model."""
    monitors = services.runtime.drift
    flush_drift(services)
    lines = drive_digits(base, services, settings) if digits.NAME in monitors else []
    realized: dict[str, RealizedPerformance] = {}
    if credit.NAME in monitors:
        found = drive_credit(base, services, settings)
        if found is not None:
            realized[credit.NAME] = found
    lines += ["", *monitoring_lines({n: m.latest for n, m in monitors.items()}, realized)]
    lines.append(
        "  alerts: set INFERTRAIL_ALERT_RULES_FILE (see examples/alert-rules.toml) to page on it"
    )
    return lines


def drive_credit(
    base: str, services: DemoService, settings: Settings
) -> RealizedPerformance | None:
    """One window of the credit model's held-out applicants (at most all 200); with the
    outcomes loop on, their true outcomes are posted and the performance realized on them is
    read back from the service's performance view (None without the loop: none realized)."""
    labelled = held_out_credit()[: settings.drift_window_size]
    start = rfc3339_micros(time.time_ns())
    if services.runtime.outcomes is None:
        with httpx.Client(base_url=base, timeout=30.0) as client:
            send_all(client, CREDIT_SCORE_PATH, [[body for body, _ in labelled]])
        flush_drift(services)
        return None
    _, emitter = send_with_outcomes(
        base, CREDIT_SCORE_PATH, labelled, CREDIT_LABELS, delay_s=OUTCOME_DELAY_S
    )
    flush_drift(services)
    end = rfc3339_micros(time.time_ns())
    with httpx.Client(base_url=base, timeout=30.0) as client:
        r = client.get(PERFORMANCE_PATH, params={"model": credit.NAME, "from": start, "to": end})
    if r.status_code != 200:
        raise RuntimeError(f"{PERFORMANCE_PATH} answered {r.status_code}: {r.text[:1000]}")
    # The span holds this window's predictions only, all by the one served version.
    groups = [g for g in r.json()["groups"] if g["model"] == credit.NAME]
    if not groups:
        return RealizedPerformance(0, None, None, lost=emitter.lost)
    group = groups[0]
    return RealizedPerformance(group["n"], group["accuracy"], group["roc_auc"], emitter.lost)


def drive_digits(base: str, services: DemoService, settings: Settings) -> list[str]:
    """One window of clean digits, then one of noisy ones; what drift monitoring made of each."""
    monitor = services.runtime.drift["digits"]
    lines = [f"\ndrift monitoring (digits, windows of {settings.drift_window_size} images):"]
    for scenario in ("clean", "gaussian_noise"):
        simulate_traffic(
            base,
            model="digits",
            scenario=scenario,
            severity=3,
            windows=1,
            window_size=settings.drift_window_size,
        )
        services.monitor.flush()
        monitor.flush()
        report = monitor.latest
        if report is not None:
            lines.append(
                f"  {scenario:<15} share of drifted features {report.share_drifted:.2f}"
                f"  drift score {report.drift_score:.3f}  dataset drift {report.dataset_drift}"
            )
    return lines


def pick_correlated(settings: Settings, outcomes: list[Outcome]) -> RequestTelemetry | None:
    """The most recent successful request whose metric exemplar survived (one per bucket)."""
    for o in reversed([o for o in outcomes if o.status == 200][-50:]):
        view = find_request(settings.telemetry_dir, o.request_id)
        if view is not None and view.exemplars and view.logs:
            return view
    return None


def print_summary(settings: Settings, outcomes: list[Outcome]) -> None:
    ok = [o for o in outcomes if o.status == 200]
    errors = [o for o in outcomes if o.status != 200]
    lat = sorted(o.latency_s * 1000 for o in ok)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")
    t = settings.telemetry_dir
    print()
    print(f"requests {len(outcomes)}  served {len(ok)}  rejected {len(errors)} (4xx, on purpose)")
    print(f"latency  p50 {p50:.2f} ms  p99 {p99:.2f} ms  (client side, loopback)")
    print("telemetry went to:")
    for name, what in (
        (TRACES_FILE, "spans, OTLP/JSON"),
        (METRICS_FILE, "metrics, OTLP/JSON"),
        (LOGS_FILE, "logs, OTLP/JSON"),
        (INFERENCE_LOG_FILE, "one JSON line per inference"),
    ):
        print(f"  {t / name}  ({what})")
    if settings.otlp_endpoint:
        print(f"  {settings.otlp_endpoint}  (OTLP/HTTP)")
    view = pick_correlated(settings, outcomes)
    if view is None:
        print("\nno request with a metric exemplar found yet (exports run every second)")
        return
    infer = next(s for _, s in view.tree() if s.name == "inference")
    log = view.logs[0]["body"]
    ex = view.exemplars[0]
    print("\none request, three signals, one trace id:")
    rows = [
        ("request id", view.request_id),
        ("trace id", view.trace_id),
        ("spans", f"{len(view.spans)}: " + " > ".join(s.name for _, s in view.tree())),
        ("span", f"inference {infer.duration_ms:.3f} ms span_id={infer.span_id}"),
        ("log line", json.dumps(log, separators=(",", ":"))[:160] + " ..."),
        ("exemplar", f"{ex.metric}={ex.value:g} trace_id={ex.trace_id} span_id={ex.span_id}"),
    ]
    for k, v in rows:
        print(f"  {k:<11} {v}")
    print(f"\nmore: infertrail --data-dir {settings.data_dir} trace {view.request_id}")
    print_audit(settings, outcomes)


def print_audit(settings: Settings, outcomes: list[Outcome]) -> None:
    """What the audit trail holds now: size, lake, verification, one credit decision."""
    if not settings.audit_enabled:
        return
    vkey = verifier_key_path(settings.signing_key_file).read_text().strip()
    report = verify_log(settings.audit_log_dir, settings.lake_url, NoteVerifier.from_key(vkey))
    status = "intact" if report.ok else f"DAMAGED: {report.finding}"
    print(f"\naudit trail: {report.records} decisions, verification {status}")
    print(f"  log   {settings.audit_log_dir}  (WAL, signed checkpoints)")
    print(f"  lake  {settings.lake_url}  (Parquet, dt=/hour=, signed manifests)")
    print(f"  verifier key {vkey}")
    print(
        f"  raw credit applications: encrypted per applicant under {settings.privacy_dir}, "
        f"kept {settings.raw_payloads_retention_days} days, readable only by break-glass"
    )
    credit_decisions = [o for o in outcomes if o.path == CREDIT_SCORE_PATH and o.audit_seq]
    declined = [o for o in credit_decisions if o.decision == "decline"]
    seq = next((o.audit_seq for o in declined or credit_decisions), None)
    if seq is not None:
        evidence = make_evidence(settings.audit_log_dir, settings.lake_url, seq)
        record = json.loads(evidence["record"])
        shown = {k: record[k] for k in ("seq", "subject", "decision", "score", "ci_low", "ci_high")}
        reasons = (record.get("explanation") or {}).get("reason_codes") or []
        print(f"  one credit decision (subject pseudonymized): {json.dumps(shown)}")
        print(f"    reason codes: {reasons}")
        print(f"  prove it:   infertrail --data-dir {settings.data_dir} audit prove --seq {seq}")
        print("  check it:   infertrail audit check-proof FILE --key '<verifier key>'")
