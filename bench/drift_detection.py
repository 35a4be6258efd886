"""Detection quality of drift alerting on the digits scenarios, in process (no HTTP).

The production path without the sockets: held-out digits (corrupted by the simulator's
corruptions), classified by the trained digits model, turned into feature rows by its reference
profile, judged window by window by ``DriftDetector`` with the default ``DriftConfig``, and the
verdict fed through ``alerting.sources.drift_signals`` to an ``AlertEngine`` holding the default
rule, ``digits-input-drift`` of examples/alert-rules.toml (``drift.share_drifted > 0.3`` for 3
windows, resolve after 2). Windows have the default ``drift_window_size`` of the settings.

1. Detection delay: per scenario and severity 1..5, two clean windows, then corrupted windows
   until the rule triggers (at most ``--max-windows``); the delay is the number of corrupted
   windows it took (the rule's N, 3, is the fastest possible). Repeated with other seeds.
2. False alarms: ``--windows`` (>= 1,000 for the recorded run) consecutive clean windows through
   one engine; the share of windows breaching the threshold and the number of triggers.
   Clean windows are drawn with replacement from the 450 held-out digits: the only unseen
   images there are, so windows overlap and this measures the rule on this clean population plus
   sampling noise, not 1,000 independent populations.

    .venv/bin/python bench/drift_detection.py            # 3 seeds, 1,000 clean windows (~7 min)
    .venv/bin/python bench/drift_detection.py --quick    # 1 seed, severities 1/3/5 (~40 s)
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from infertrail.alerting import AlertEngine, AlertRule, load_rules
from infertrail.config import Settings
from infertrail.demo.corruptions import SCENARIOS, SEVERITIES, corrupt
from infertrail.drift import (
    DriftDetector,
    DriftReport,
    DriftWindow,
    Profile,
    load_profile,
    profile_path,
)
from infertrail.models import digits
from infertrail.models.digits import DigitsModel
from infertrail.runtime.alerts import drift_signals
from machine import cpu_model

REPO = Path(__file__).resolve().parents[1]
RULES_FILE = REPO / "examples" / "alert-rules.toml"
RULE_NAME = "digits-input-drift"
MODEL = "digits"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def default_rule() -> AlertRule:
    """The example rule for digits drift, without its receivers (nothing is sent)."""
    try:
        rule = load_rules(RULES_FILE).rule(RULE_NAME)
    except KeyError as exc:
        raise SystemExit(f"{RULES_FILE}: {exc}") from None
    return rule.model_copy(update={"receivers": ()})


@dataclass
class Judge:
    """Model, profile and detector: one window of images in, one drift report out."""

    model: DigitsModel
    profile: Profile
    detector: DriftDetector
    seconds: list[float] = field(default_factory=list)

    def report(self, images: np.ndarray) -> DriftReport:
        labels, confidences = self.model.predict_batch(images)
        codes = np.array([self.profile.label_code(x) for x in labels], dtype=np.int64)
        rows = self.profile.features_batch(images)
        t0 = time.perf_counter()
        out = self.detector.compare(DriftWindow(rows, codes, confidences))
        self.seconds.append(time.perf_counter() - t0)
        return out


class Stream:
    """Windows of held-out digits, drawn with replacement, corrupted as asked."""

    def __init__(self, images: np.ndarray, window: int, seed: int) -> None:
        self.images = images
        self.window = window
        self.rng = np.random.default_rng(seed)

    def next(self, scenario: str = "clean", severity: int = 1) -> np.ndarray:
        picked = self.images[self.rng.integers(0, len(self.images), self.window)]
        return corrupt(picked, scenario, severity, self.rng)


class Rule:
    """A fresh engine over the default rule, evaluated once per window."""

    def __init__(self, rule: AlertRule) -> None:
        self.rule = rule
        self.engine = AlertEngine([rule], None, None)
        self.windows = 0

    def evaluate(self, report: DriftReport) -> list[str]:
        at = T0 + timedelta(minutes=self.windows)
        self.windows += 1
        return [t.kind for t in self.engine.evaluate(drift_signals(report), MODEL, at)]


@dataclass
class DelayRow:
    scenario: str
    severity: int
    delays: list[int | None]
    shares: list[float]
    scores: list[float]
    confidences: list[float]


def measure_delay(
    judge: Judge, rule: AlertRule, images: np.ndarray, window: int, scenario: str,
    severity: int, seeds: list[int], max_windows: int,
) -> DelayRow:  # fmt: skip
    row = DelayRow(scenario, severity, [], [], [], [])
    for seed in seeds:
        stream, engine = Stream(images, window, seed), Rule(rule)
        for _ in range(2):  # steady state first: clean windows must not trigger
            if engine.evaluate(judge.report(stream.next())):
                raise SystemExit(f"a clean warm-up window triggered ({scenario}, seed {seed})")
        delay = None
        for k in range(1, max_windows + 1):
            report = judge.report(stream.next(scenario, severity))
            row.shares.append(report.share_drifted)
            row.scores.append(report.drift_score)
            row.confidences.append(report.prediction.confidence_mean or float("nan"))
            if "trigger" in engine.evaluate(report):
                delay = k
                break
        row.delays.append(delay)
    return row


@dataclass
class FalseAlarms:
    windows: int
    breaches: int
    triggers: int
    dataset_drift: int
    shares: list[float]


def measure_false_alarms(
    judge: Judge, rule: AlertRule, images: np.ndarray, window: int, n_windows: int, seed: int
) -> FalseAlarms:
    stream, engine = Stream(images, window, seed), Rule(rule)
    shares: list[float] = []
    breaches = triggers = dataset = 0
    for _ in range(n_windows):
        report = judge.report(stream.next())
        shares.append(report.share_drifted)
        breaches += rule.breached(report.share_drifted)
        dataset += report.dataset_drift
        triggers += engine.evaluate(report).count("trigger")
    return FalseAlarms(n_windows, breaches, triggers, dataset, shares)


def _delay_text(delays: list[int | None], max_windows: int) -> str:
    found = [d for d in delays if d is not None]
    if not found:
        return f"none in {max_windows}"
    med = statistics.median(found)
    text = f"{med:g}" if min(found) == max(found) else f"{med:g} [{min(found)}-{max(found)}]"
    missed = len(delays) - len(found)
    return text + (f" ({missed} missed)" if missed else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, severities 1/3/5, 60 windows")
    parser.add_argument("--windows", type=int, help="clean windows for false alarms (1000)")
    parser.add_argument("--seeds", type=int, help="runs per scenario and severity (3)")
    parser.add_argument("--max-windows", type=int, default=20, help="corrupted windows at most")
    parser.add_argument("--window-size", type=int, help="default: the settings' default (500)")
    args = parser.parse_args()
    n_windows = args.windows or (60 if args.quick else 1000)
    n_seeds = args.seeds or (1 if args.quick else 3)
    severities = (1, 3, 5) if args.quick else SEVERITIES
    default_window = Settings.model_fields["drift_window_size"].default
    window = args.window_size or int(default_window)
    rule = default_rule()

    with tempfile.TemporaryDirectory() as tmp:
        info = digits.train(Path(tmp))
        model = DigitsModel.load(Path(tmp))
        profile = load_profile(profile_path(Path(tmp), MODEL), expected_sha256=info.sha256)
    judge = Judge(model, profile, DriftDetector(profile))
    held_out = digits.split().test_images

    print("# digits drift detection (in process, default DriftConfig)")
    print(
        f"cpu: {cpu_model()}   date: {dt.date.today().isoformat()}   "
        f"python {platform.python_version()}"
    )
    print(
        f"window: {window} samples   rule {rule.name}: {rule.signal} {rule.comparison} "
        f"{rule.threshold:g} for {rule.for_windows} windows, resolve after {rule.resolve_after}"
    )
    print(f"reference: {profile.n_rows} training images; traffic: {len(held_out)} held-out images")
    started = time.perf_counter()

    print(f"\n## detection delay (corrupted windows until the trigger; {n_seeds} seed(s))")
    head = (
        f"{'scenario':<15}{'sev':>4}  {'delay':<16}{'breach':>7}{'share':>7}{'score':>7}{'conf':>7}"
    )
    print(head)
    print("-" * len(head))
    for scenario in [s for s in SCENARIOS if s != "clean"]:
        for severity in severities:
            row = measure_delay(
                judge, rule, held_out, window, scenario, severity,
                list(range(n_seeds)), args.max_windows,
            )  # fmt: skip
            breach = float(np.mean([rule.breached(s) for s in row.shares]))
            print(
                f"{scenario:<15}{severity:>4}  {_delay_text(row.delays, args.max_windows):<16}"
                f"{breach:>7.2f}{np.mean(row.shares):>7.3f}{np.mean(row.scores):>7.3f}"
                f"{np.nanmean(row.confidences):>7.3f}",
                flush=True,
            )
    print("breach: share of corrupted windows above the threshold; share/score: mean share of")
    print("drifted features / mean drift score; conf: mean prediction confidence")

    fa = measure_false_alarms(judge, rule, held_out, window, n_windows, seed=10_000)
    q = np.percentile(fa.shares, [50, 99])
    print(f"\n## false alarms on clean traffic ({fa.windows} consecutive windows)")
    print(f"windows breaching the threshold: {fa.breaches} ({fa.breaches / fa.windows:.2%})")
    print(
        f"alert triggers: {fa.triggers} ({1000 * fa.triggers / fa.windows:.2f} per 1,000 windows)"
    )
    print(f"windows flagged dataset_drift (share >= 0.5): {fa.dataset_drift}")
    print(f"share of drifted features: median {q[0]:.3f}  p99 {q[1]:.3f}  max {max(fa.shares):.3f}")

    ms = [s * 1e3 for s in judge.seconds]
    print(
        f"\ndetector time per window ({len(ms)} windows): median {statistics.median(ms):.1f} ms"
        f"  p99 {np.percentile(ms, 99):.1f} ms   total run {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
