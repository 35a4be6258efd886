"""``infertrail demo``: train, serve on localhost, drive traffic, summarise what was recorded.

After the mixed traffic, drift monitoring is shown at work: a clean and a noisy window of
digits, one window of credit applications whose true outcomes are fed back, and for every model
its last window as the detector and the window analyzers judged it (:mod:`.monitoring`).
"""

from __future__ import annotations

import json
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import uvicorn

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.proofs import make_evidence
from infertrail.audit.verify import verify_log
from infertrail.config import Settings
from infertrail.demo.monitoring import RealizedPerformance, monitoring_lines
from infertrail.demo.outcomes import CREDIT_LABELS
from infertrail.demo.simulate import held_out_credit, send_all, send_with_outcomes, simulate_traffic
from infertrail.events import rfc3339_micros
from infertrail.models import credit, digits, sentiment, train_all
from infertrail.outcomes.api import PERFORMANCE_PATH
from infertrail.server.app import DemoService, build_services, create_app
from infertrail.server.credit import CREDIT_SCORE_PATH
from infertrail.server.sentiment import SENTIMENT_PATH
from infertrail.telemetry.files import LOGS_FILE, METRICS_FILE, TRACES_FILE
from infertrail.telemetry.readback import RequestTelemetry, find_request
from infertrail.telemetry.setup import INFERENCE_LOG_FILE

#: The credit window's outcomes fall due after the whole window, so they go out in one batch,
#: as ground truth arriving late would.
OUTCOME_DELAY_S = 3600.0


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
    for info in train_all(settings.models_dir):
        print(f"trained  {info.name} {info.version}  sha256={info.sha256[:16]}...")
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

        with ThreadPoolExecutor(4) as pool:
            outcomes = list(pool.map(send, traffic(n_requests)))
    drift_lines = drive_monitoring(base, services, settings) if services.runtime.drift else []
    if keep_serving:
        print("serving until Ctrl-C ...")
        try:
            while server.is_alive():
                time.sleep(1)
        except KeyboardInterrupt:
            pass
    server.server.should_exit = True
    server.join(timeout=30)
    services.close()  # drains the event queue and flushes every exporter
    print_summary(settings, outcomes)
    for line in drift_lines:
        print(line)
    return 0


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
