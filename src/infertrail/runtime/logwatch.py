"""``infertrail audit monitor URL``: follow a remote tiled log, remember it, alert on misbehaviour.

Each look (:func:`infertrail.audit.monitor.observe`) fetches the log's checkpoint, verifies it
and checks it against the remembered one with a consistency proof from the log's tiles. Then
:class:`LogWatch`:

- remembers a consistent checkpoint in the verifier state (:class:`~infertrail.audit.
  verifier_state.StateFile`, the same file ``audit verify`` keeps for that log), or keeps the
  evidence of a rollback or fork beside the remembered one, which never moves;
- evaluates the alert rules' ``tlog.*`` signals (docs/verification.md) with the alert engine,
  whose notifiers page, post to Slack, Alertmanager or a webhook (docs/alerting.md); the
  engine's state sits beside the verifier state, so repeated ``--once`` runs (cron) neither page
  twice nor lose a resolve.

A log that stopped growing is "stalled" after ``stall_after_s`` seconds (judged from the
state's ``verified_at``, so across runs too). With ``--once`` the exit code says it all: 0 the
log is consistent and live, 1 a fork, rollback, invalid checkpoint or tiles, unreachable log or
stall, 2 a usage error.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from infertrail.alerting import AlertEngine, NotifierDispatch, RuleSet, load_rules
from infertrail.alerting.rules import ReceiverSecretError, RuleError
from infertrail.audit.checkpoint import NoteError, NoteVerifier
from infertrail.audit.cosignature import WitnessPolicy
from infertrail.audit.monitor import (
    SIGNALS,
    CosignatureCheck,
    HttpLog,
    Observation,
    observe,
    witness_quorum,
)
from infertrail.audit.verifier_state import StateError, StateFile, default_state_path
from infertrail.commandline import UsageProblem

__all__ = ["LogWatch", "Look", "monitor"]

log = logging.getLogger("infertrail.logwatch")

EXIT_PROBLEM = 1


class Look:
    """One look and what came of it: the observation, the state update, the stall."""

    def __init__(self, observation: Observation, remembered: str, stalled: bool) -> None:
        self.observation = observation
        self.remembered = remembered  # created / advanced / unchanged / changed / kept / failed
        self.stalled = stalled

    @property
    def ok(self) -> bool:
        """True when the log is consistent, reachable and not stalled."""
        return self.observation.kind == "ok" and not self.stalled

    def line(self) -> str:
        """One line for a terminal or a log."""
        obs = self.observation
        cp = obs.checkpoint
        where = f"{cp.origin} size {cp.size}" if cp is not None else "log"
        head = "OK" if self.ok else ("STALLED" if obs.kind == "ok" else obs.kind.upper())
        parts = [f"{head}: {where}: {obs.detail}"]
        if self.stalled:
            parts.append(f"not grown for {obs.seconds_since_growth():.0f} s")
        if obs.witnesses:
            parts.append(f"witnesses: {obs.witnesses}")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``: one object per look)."""
        obs = self.observation
        cp = obs.checkpoint
        return {
            "ok": self.ok,
            "kind": obs.kind,
            "stalled": self.stalled,
            "detail": obs.detail,
            "at": obs.at.isoformat(),
            "origin": cp.origin if cp else None,
            "size": cp.size if cp else None,
            "remembered": self.remembered,
            "signals": obs.signals(),
            "evidence": obs.verdict.evidence() if obs.verdict is not None else None,
            "witnesses": obs.witnesses,
            "tiles_fetched": obs.fetched,
        }


class LogWatch:
    """Follows one log: look, remember, alert (see the module docstring)."""

    def __init__(
        self,
        log_client: HttpLog,
        verifier: NoteVerifier,
        origin: str,
        state: StateFile,
        *,
        engine: AlertEngine | None = None,
        stall_after_s: float | None = None,
        cosignatures: CosignatureCheck | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.log = log_client
        self.verifier = verifier
        self.origin = origin
        self.state = state
        self.engine = engine
        self.stall_after_s = stall_after_s
        self.cosignatures = cosignatures
        self._clock = clock

    def look(self) -> Look:
        """Look at the log once; StateError if the state file cannot be used."""
        now = self._clock()
        remembered = self.state.load(self.verifier, self.origin)
        obs = observe(
            self.log, self.verifier, self.origin, remembered, now, cosignatures=self.cosignatures
        )
        outcome = "kept"
        source = self.log.url
        try:
            if obs.kind == "ok" and obs.note is not None:
                outcome, _ = self.state.advance(
                    obs.note, self.verifier, self.origin, source=source, seen=remembered, now=now
                )
            elif obs.verdict is not None and obs.kind in ("rollback", "fork"):
                verdict = obs.verdict
                self.state.record_conflict(
                    verdict.kind,
                    verdict.detail,
                    verdict.evidence(),
                    obs.note,
                    self.verifier,
                    self.origin,
                    source=source,
                    now=now,
                )
        except OSError as exc:  # a full or read-only disk: keep watching, and say so
            outcome = "failed"
            log.error("verifier state %s not updated: %s", self.state.path, exc)
        stalled = self.stall_after_s is not None and obs.seconds_since_growth() > self.stall_after_s
        if self.engine is not None:
            self.engine.evaluate(obs.signals(), self.origin, now)
        look = Look(obs, outcome, stalled)
        (log.info if look.ok else log.error)("%s", look.line())
        return look

    def run(
        self, interval_s: float, stop: threading.Event, on_look: Callable[[Look], None]
    ) -> None:
        """Look every ``interval_s`` seconds until ``stop`` is set."""
        while not stop.is_set():
            on_look(self.look())
            stop.wait(interval_s)


def _verifier(key: str) -> NoteVerifier:
    text = key
    path = Path(key)
    if path.is_file():
        text = path.read_text().strip()
    try:
        return NoteVerifier.from_key(text)
    except NoteError as exc:
        raise UsageProblem(f"bad verifier key {text[:60]!r}: {exc}") from exc


def _rules(path: Path | None) -> RuleSet | None:
    if path is None:
        return None
    try:
        rules = load_rules(path)
    except RuleError as exc:
        raise UsageProblem(str(exc)) from exc
    if not any(rule.signal in SIGNALS for rule in rules.rules):
        click.echo(
            f"warning: {path} has no rule on a tlog.* signal ({', '.join(SIGNALS)}): "
            "nothing will alert",
            err=True,
        )
    return rules


@contextmanager
def _alerting(rules: RuleSet | None, state_path: Path) -> Iterator[AlertEngine | None]:
    """The alert engine and its dispatch; queued notifications delivered on the way out."""
    if rules is None:
        yield None
        return
    try:
        dispatch = NotifierDispatch.from_rules(rules)
    except ReceiverSecretError as exc:
        raise UsageProblem(str(exc)) from exc
    try:
        yield AlertEngine(rules, dispatch, state_path.with_name(state_path.stem + ".alerts.json"))
    finally:
        dispatch.close(5.0)


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@click.command()
@click.argument("url")
@click.option("--key", required=True, help="The log's verifier key (or a file holding it).")
@click.option("--origin", help="The log's origin (default: the key's name).")
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Verifier state file. Default: $XDG_CONFIG_HOME/infertrail/verifier/<origin hash>.json "
    "(shared with `audit verify` of the same log).",
)
@click.option("--once", is_flag=True, help="Look once; exit 1 on any problem.")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=60.0,
    show_default=True,
    help="Seconds between looks.",
)
@click.option(
    "--stall-after",
    type=click.FloatRange(min=0),
    help="Seconds without growth after which the log counts as stalled (default: never).",
)
@click.option(
    "--alert-rules",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Alert rules and receivers (docs/alerting.md) over the tlog.* signals.",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    help="A witness's cosigner key (repeat): each checkpoint must carry a quorum's cosignatures.",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=1),
    help="Witnesses that must cosign (default: a majority of --witness).",
)
@click.option("--timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per look.")
def monitor(
    url: str,
    key: str,
    origin: str | None,
    state_path: Path | None,
    once: bool,
    interval: float,
    stall_after: float | None,
    alert_rules: Path | None,
    witnesses: tuple[str, ...],
    quorum: int | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Follow a tlog-tiles log: verify, check consistency, alert on fork, rollback, stall."""
    verifier = _verifier(key)
    origin = origin or verifier.name
    try:
        path = state_path or default_state_path(origin)
    except StateError as exc:
        raise UsageProblem(f"{exc}: pass --state FILE") from exc
    rules = _rules(alert_rules)
    cosignatures = None
    if witnesses:
        try:
            cosignatures = witness_quorum(WitnessPolicy.of(witnesses, quorum))
        except (NoteError, ValueError) as exc:
            raise UsageProblem(f"bad --witness/--quorum: {exc}") from exc
    elif quorum is not None:
        raise UsageProblem("--quorum needs --witness")
    try:
        client = HttpLog(url, timeout_s=timeout)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from exc

    def show(look: Look) -> None:
        click.echo(json.dumps(look.to_dict(), sort_keys=True) if as_json else look.line())

    try:
        with _alerting(rules, path) as engine:
            watch = LogWatch(
                client,
                verifier,
                origin,
                StateFile(path),
                engine=engine,
                stall_after_s=stall_after,
                cosignatures=cosignatures,
            )
            if once:
                look = watch.look()
                show(look)
                if not look.ok:
                    raise SystemExit(EXIT_PROBLEM)
                return
            stop = threading.Event()
            with _stop_on_signals(stop):
                watch.run(interval, stop, show)
    except StateError as exc:
        raise UsageProblem(str(exc)) from exc
    finally:
        client.close()
