"""The alert engine: one state machine per (rule, model), fed once per window or evaluation.

``inactive`` -> ``firing`` after ``for_windows`` consecutive breaching evaluations (one trigger);
while firing, breaches never page again (receivers that expire alerts get a ``refresh``);
``firing`` -> ``inactive`` after ``resolve_after`` consecutive clean evaluations (one resolve).

An evaluation that lacks a rule's signal (or whose value is NaN) does not count for that rule:
it neither breaches nor is clean, and both counters stay where they were. Evaluations older
than (or as old as) the last one counted for a (rule, model) are ignored, so replaying a window
after a crash does not count it twice.

State and the outbox of undelivered notifications are persisted after every change and
reloaded on start: a restart neither pages again nor loses a resolve.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from os import PathLike
from typing import Any

from infertrail.alerting.rules import AlertRule, RuleSet, rule_list
from infertrail.alerting.state import AlertKey, AlertState, StateStore
from infertrail.alerting.templates import render
from infertrail.alerting.transitions import Delivery, Dispatch, Transition, TransitionKind

log = logging.getLogger("infertrail.alerting")

# PagerDuty's limit; longer rendered keys are shortened with a digest so they stay unique.
MAX_DEDUP_KEY = 255


def bounded_dedup_key(key: str) -> str:
    """``key`` itself if short enough, else a prefix plus the SHA-256 of the whole key."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[: MAX_DEDUP_KEY - len(digest) - 1]}#{digest}"


class AlertEngine:
    """Evaluates rules against signal values and sends trigger/resolve transitions."""

    def __init__(
        self,
        rules: RuleSet | Sequence[AlertRule],
        notifier_dispatch: Dispatch | None,
        state_path: str | PathLike[str] | None,
    ) -> None:
        """Load the state at ``state_path`` and re-send deliveries left from a previous run."""
        self._rules = rule_list(rules)
        self._dispatch = notifier_dispatch
        self._store = StateStore(state_path)
        self._lock = threading.RLock()
        self.persist_failures = 0
        alerts, outbox = self._store.load()
        known = {r.name for r in self._rules}
        gone = sorted({k for k in alerts if k[0] not in known})
        for key in gone:
            was = alerts.pop(key)
            log.warning(
                "alert state for rule %r model %r dropped: the rule no longer exists%s",
                *key,
                " (it was firing; resolve it by hand)" if was.status == "firing" else "",
            )
        self._alerts: dict[AlertKey, AlertState] = alerts
        self._outbox: dict[str, Delivery] = {d.id: d for d in outbox}
        if gone:
            self._persist()
        for delivery in outbox:
            log.info(
                "re-sending %s for %s to %r",
                delivery.transition.kind,
                delivery.transition.dedup_key,
                delivery.receiver,
            )
            self._send(delivery)

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        """The rules this engine evaluates."""
        return self._rules

    def evaluate(self, signals: Mapping[str, float], model: str, at: datetime) -> list[Transition]:
        """Count one evaluation of ``model`` at ``at``; return the triggers and resolves."""
        if at.tzinfo is None:
            raise ValueError(f"evaluation time must be timezone-aware, got {at.isoformat()}")
        if not model:
            raise ValueError("model must be a non-empty model name")
        changes: list[Transition] = []
        deliveries: list[Delivery] = []
        with self._lock:
            # Every value is checked before any state moves: a bad one changes nothing.
            values = [
                (rule, _as_float(rule, signals[rule.signal]))
                for rule in self._rules
                if rule.applies_to(model) and rule.signal in signals
            ]
            changed = False
            for rule, value in values:
                if math.isnan(value):
                    continue
                key = (rule.name, model)
                state = self._alerts.setdefault(key, AlertState())
                if state.last_at is not None and at <= state.last_at:
                    log.debug("rule %r model %r: evaluation at %s is not newer; ignored", *key, at)
                    continue
                transition = _advance(rule, model, state, value, at)
                changed = True
                if transition is None:
                    continue
                if transition.kind != "refresh":
                    changes.append(transition)
                for receiver in transition.receivers:
                    d = Delivery(
                        uuid.uuid4().hex, receiver, transition, transition.kind != "refresh"
                    )
                    deliveries.append(d)
                    if d.durable:
                        self._outbox[d.id] = d
            if changed:
                self._persist()
            # Sent under the lock, after the state that produced them is saved, so a trigger
            # and its resolve reach each receiver's queue in order.
            for d in deliveries:
                self._send(d)
        return changes

    def states(self) -> dict[AlertKey, AlertState]:
        """A copy of every (rule, model) state, for inspection."""
        with self._lock:
            return {k: replace(v) for k, v in self._alerts.items()}

    def firing(self) -> list[Transition]:
        """The trigger transitions of the alerts firing now."""
        with self._lock:
            return [s.active for s in self._alerts.values() if s.active is not None]

    def pending_deliveries(self) -> list[Delivery]:
        """Trigger/resolve deliveries not yet delivered or given up (the outbox)."""
        with self._lock:
            return list(self._outbox.values())

    # -- internals ------------------------------------------------------------------------------
    def _send(self, delivery: Delivery) -> None:
        if self._dispatch is None:
            self._settled(delivery, False)
            return
        try:
            self._dispatch.submit(delivery, self._settled)
        except Exception:
            # The dispatch promises not to raise; if it does, alert evaluation must go on.
            log.exception("dispatch refused delivery %s to %r", delivery.id, delivery.receiver)

    def _settled(self, delivery: Delivery, delivered: bool) -> None:
        if not delivery.durable:
            return
        with self._lock:
            if self._outbox.pop(delivery.id, None) is not None:
                self._persist()

    def _persist(self) -> None:
        try:
            self._store.save(self._alerts, list(self._outbox.values()))
        except OSError:
            # Alerting goes on from memory; a restart before the next good save may re-page.
            self.persist_failures += 1
            log.exception("cannot save alert state to %s", self._store.path)


def _as_float(rule: AlertRule, raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise ValueError(
            f"rule {rule.name!r}: signal {rule.signal!r} must be a number, got {raw!r}"
        ) from None


def _advance(
    rule: AlertRule, model: str, state: AlertState, value: float, at: datetime
) -> Transition | None:
    """Move one state machine by one evaluation; the transition to send, if any."""
    state.last_at = at
    breached = rule.breached(value)
    if state.status == "inactive":
        state.breaches = state.breaches + 1 if breached else 0
        if state.breaches < rule.for_windows:
            return None
        trigger = _transition(rule, model, "trigger", value, at, started_at=at)
        state.status, state.breaches, state.clean, state.active = "firing", 0, 0, trigger
        return trigger
    assert state.active is not None  # a firing state always holds its trigger
    state.clean = 0 if breached else state.clean + 1
    if state.clean < rule.resolve_after:
        return _follow_up(rule, state.active, "refresh", value, at)
    resolve = _follow_up(rule, state.active, "resolve", value, at)
    state.status, state.breaches, state.clean, state.active = "inactive", 0, 0, None
    return resolve


def _context(rule: AlertRule, model: str, value: float, status: str) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "model": model,
        "signal": rule.signal,
        "value": value,
        "threshold": rule.threshold,
        "comparison": rule.comparison,
        "severity": rule.severity,
        "for_windows": rule.for_windows,
        "resolve_after": rule.resolve_after,
        "status": status,
        "labels": dict(rule.labels),
    }


def _annotations(rule: AlertRule, ctx: Mapping[str, Any]) -> dict[str, str]:
    return {
        field.removeprefix("annotations."): render(template, ctx)
        for field, template in rule.template_items()
    }


def _details(rule: AlertRule, model: str, value: float) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "model": model,
        "signal": rule.signal,
        "value": value if math.isfinite(value) else str(value),
        "threshold": rule.threshold,
        "comparison": rule.comparison,
        "for_windows": rule.for_windows,
        "resolve_after": rule.resolve_after,
    }


def _transition(
    rule: AlertRule,
    model: str,
    kind: TransitionKind,
    value: float,
    at: datetime,
    *,
    started_at: datetime,
) -> Transition:
    ctx = _context(rule, model, value, "firing")
    labels = {
        "alertname": rule.name,
        "model": model,
        "severity": rule.severity,
        "signal": rule.signal,
        **rule.labels,
    }
    return Transition(
        kind=kind,
        rule=rule.name,
        model=model,
        signal=rule.signal,
        value=value,
        threshold=rule.threshold,
        comparison=rule.comparison,
        severity=rule.severity,
        dedup_key=bounded_dedup_key(render(rule.dedup_key, ctx)),
        labels=labels,
        annotations=_annotations(rule, ctx),
        started_at=started_at,
        at=at,
        receivers=rule.receivers,
        custom_details=_details(rule, model, value),
    )


def _follow_up(
    rule: AlertRule, active: Transition, kind: TransitionKind, value: float, at: datetime
) -> Transition:
    """A refresh or resolve of ``active``: same identity (dedup key, labels, start), new value.

    Identity and receivers come from the stored trigger, not from the rule as it is now, so the
    resolve pairs with what was paged even if the rule changed across a restart.
    """
    ctx = _context(rule, active.model, value, "resolved" if kind == "resolve" else "firing")
    return replace(
        active,
        kind=kind,
        value=value,
        at=at,
        annotations=_annotations(rule, ctx),
        custom_details=_details(rule, active.model, value),
    )
