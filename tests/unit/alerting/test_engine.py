"""The alert state machine: fire at N, never re-page, resolve once after M, survive restarts."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.alerting.engine import MAX_DEDUP_KEY, AlertEngine, bounded_dedup_key
from infertrail.alerting.state import StateFileError
from infertrail.alerting.testing import RecordingDispatch
from infertrail.alerting.transitions import Transition
from tests.unit.alerting.helpers import T0, rule, window

HIGH = {"drift.share_drifted": 0.9}
LOW = {"drift.share_drifted": 0.1}


def run(
    engine: AlertEngine, pattern: str, start: int = 0, model: str = "digits"
) -> list[Transition]:
    """Evaluate one window per character: B = breach, c = clean, - = signal missing."""
    out: list[Transition] = []
    for i, ch in enumerate(pattern):
        signals = {"B": HIGH, "c": LOW, "-": {}}[ch]
        out += engine.evaluate(signals, model, window(start + i))
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_fires_exactly_at_the_nth_consecutive_breach(n: int) -> None:
    dispatch = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=n)], dispatch, None)
    for i in range(n - 1):
        assert engine.evaluate(HIGH, "digits", window(i)) == []
    fired = engine.evaluate(HIGH, "digits", window(n - 1))
    assert [t.kind for t in fired] == ["trigger"]
    t = fired[0]
    assert (t.rule, t.model, t.value, t.severity, t.at) == (
        "digits-drift",
        "digits",
        0.9,
        "critical",
        window(n - 1),
    )
    assert t.started_at == t.at
    assert t.dedup_key == "infertrail/digits-drift/digits"
    assert t.labels == {
        "alertname": "digits-drift",
        "model": "digits",
        "severity": "critical",
        "signal": "drift.share_drifted",
    }
    assert t.summary == (
        "digits-drift firing: drift.share_drifted = 0.9 on model digits (fires when > 0.3)"
    )
    assert [d.transition.kind for d in dispatch.deliveries] == ["trigger"]


def test_stays_firing_without_repaging() -> None:
    dispatch = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=2)], dispatch, None)
    changes = run(engine, "BB" + "B" * 20)
    assert [t.kind for t in changes] == ["trigger"]
    assert len(dispatch.transitions("trigger")) == 1
    # Re-assertions go out (for receivers that expire alerts) but are never triggers.
    assert len(dispatch.transitions("refresh")) == 20
    assert all(t.dedup_key == changes[0].dedup_key for t in dispatch.transitions())


def test_resolves_exactly_once_after_m_clean() -> None:
    dispatch = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=2, resolve_after=3)], dispatch, None)
    changes = run(engine, "BB" + "cc")
    assert [t.kind for t in changes] == ["trigger"]
    resolved = engine.evaluate(LOW, "digits", window(4))
    assert [t.kind for t in resolved] == ["resolve"]
    r = resolved[0]
    assert r.started_at == window(1) and r.at == window(4)
    assert r.dedup_key == changes[0].dedup_key and r.labels == changes[0].labels
    assert r.annotations["summary"].startswith("digits-drift resolved: ")
    assert run(engine, "c" * 10, start=5) == []
    assert [t.kind for t in dispatch.transitions("trigger", "resolve")] == ["trigger", "resolve"]


def test_flapping_never_fires_and_never_resolves() -> None:
    engine = AlertEngine([rule(for_windows=2, resolve_after=2)], RecordingDispatch(), None)
    assert run(engine, "BcBcBcBc") == []
    fired = run(engine, "BB", start=8)
    assert [t.kind for t in fired] == ["trigger"]
    assert run(engine, "cBcBcBcB", start=10) == []
    assert engine.firing()[0].dedup_key == fired[0].dedup_key
    assert [t.kind for t in run(engine, "cc", start=18)] == ["resolve"]


def test_a_clean_window_resets_the_breach_count() -> None:
    engine = AlertEngine([rule(for_windows=3)], RecordingDispatch(), None)
    assert run(engine, "BBcBB") == []
    assert [t.kind for t in run(engine, "B", start=5)] == ["trigger"]


def test_missing_or_nan_signal_counts_for_nothing() -> None:
    engine = AlertEngine([rule(for_windows=3)], RecordingDispatch(), None)
    assert run(engine, "B-B--") == []
    assert engine.evaluate({"drift.share_drifted": float("nan")}, "digits", window(5)) == []
    assert engine.states()[("digits-drift", "digits")].breaches == 2
    assert [t.kind for t in run(engine, "B", start=6)] == ["trigger"]


def test_an_evaluation_not_newer_than_the_last_is_ignored() -> None:
    engine = AlertEngine([rule(for_windows=2)], RecordingDispatch(), None)
    assert engine.evaluate(HIGH, "digits", window(5)) == []
    # The same window replayed (say after a crash) and an older one: neither counts.
    assert engine.evaluate(HIGH, "digits", window(5)) == []
    assert engine.evaluate(HIGH, "digits", window(4)) == []
    assert [t.kind for t in engine.evaluate(HIGH, "digits", window(6))] == ["trigger"]


def test_wildcard_rule_keeps_one_state_per_model_and_specific_rule_ignores_others() -> None:
    dispatch = RecordingDispatch()
    engine = AlertEngine(
        [rule(name="any", model="*", for_windows=2), rule(name="only-digits", for_windows=2)],
        dispatch,
        None,
    )
    run(engine, "B", model="digits")
    run(engine, "B", model="sentiment")
    fired = run(engine, "B", start=1, model="sentiment")
    assert [(t.rule, t.model) for t in fired] == [("any", "sentiment")]
    assert fired[0].dedup_key == "infertrail/any/sentiment"
    fired = run(engine, "B", start=1, model="digits")
    assert sorted((t.rule, t.model) for t in fired) == [
        ("any", "digits"),
        ("only-digits", "digits"),
    ]


def test_lower_comparisons_alert_on_drops() -> None:
    r = rule(signal="prediction.confidence_mean", comparison="<", threshold=0.7, for_windows=1)
    engine = AlertEngine([r], RecordingDispatch(), None)
    assert engine.evaluate({"prediction.confidence_mean": 0.8}, "digits", window(0)) == []
    fired = engine.evaluate({"prediction.confidence_mean": 0.6}, "digits", window(1))
    assert [t.kind for t in fired] == ["trigger"]


def test_one_delivery_per_receiver_and_none_without_receivers() -> None:
    dispatch = RecordingDispatch()
    engine = AlertEngine(
        [
            rule(receivers=["pd", "am"], for_windows=1),
            rule(name="quiet", receivers=[], for_windows=1),
        ],
        dispatch,
        None,
    )
    fired = engine.evaluate(HIGH, "digits", window(0))
    assert len(fired) == 2
    assert sorted(d.receiver for d in dispatch.deliveries) == ["am", "pd"]


def test_templates_render_with_values_and_labels() -> None:
    r = rule(
        for_windows=1,
        labels={"team": "vision"},
        annotations={
            "summary": "{model}: {value:.0%} drifted (> {threshold:.0%}) for {for_windows} windows",
            "owner": "team {labels[team]}, {severity}, {{literal}}",
        },
        dedup_key="{labels[team]}/{rule}/{model}/{signal}",
    )
    engine = AlertEngine([r], RecordingDispatch(), None)
    t = engine.evaluate({"drift.share_drifted": 0.456}, "digits", window(0))[0]
    assert t.summary == "digits: 46% drifted (> 30%) for 1 windows"
    assert t.annotations["owner"] == "team vision, critical, {literal}"
    assert t.dedup_key == "vision/digits-drift/digits/drift.share_drifted"
    assert t.labels["team"] == "vision"


@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_infinite_values_are_values(value: float) -> None:
    engine = AlertEngine(
        [rule(for_windows=1, comparison=">" if value > 0 else "<")], RecordingDispatch(), None
    )
    t = engine.evaluate({"drift.share_drifted": value}, "digits", window(0))[0]
    assert Transition.from_json(json.loads(json.dumps(t.to_json()))) == t


def test_bad_calls_raise_clear_errors() -> None:
    engine = AlertEngine([rule()], RecordingDispatch(), None)
    with pytest.raises(ValueError, match="timezone-aware"):
        engine.evaluate(HIGH, "digits", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="model must be"):
        engine.evaluate(HIGH, "", T0)
    with pytest.raises(
        ValueError,
        match=r"rule 'digits-drift': signal 'drift\.share_drifted' must be a number, got 'high'",
    ):
        engine.evaluate({"drift.share_drifted": "high"}, "digits", T0)  # type: ignore[dict-item]


def test_a_bad_value_changes_no_state() -> None:
    engine = AlertEngine(
        [rule(name="a", for_windows=1), rule(name="b", signal="ood.rate", for_windows=1)],
        RecordingDispatch(),
        None,
    )
    with pytest.raises(ValueError, match="rule 'b'"):
        engine.evaluate({"drift.share_drifted": 0.9, "ood.rate": None}, "digits", T0)  # type: ignore[dict-item]
    assert engine.states() == {} and engine.firing() == []


def test_long_dedup_keys_are_bounded_and_distinct() -> None:
    a, b = "x" * 300 + "a", "x" * 300 + "b"
    assert len(bounded_dedup_key(a)) == MAX_DEDUP_KEY
    assert bounded_dedup_key(a) != bounded_dedup_key(b)
    assert bounded_dedup_key("short") == "short"


# -- persistence --------------------------------------------------------------------------------
def test_restart_does_not_page_again_and_still_resolves(tmp_path: Path) -> None:
    path = tmp_path / "state" / "alerts.json"
    first = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=2, resolve_after=2)], first, path)
    trigger = run(engine, "BBc")[0]
    del engine  # the process stops; every delivery had been settled

    second = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=2, resolve_after=2)], second, path)
    assert second.deliveries == []  # nothing re-sent: no duplicate page
    assert engine.firing() == [trigger]
    assert run(engine, "BB", start=3) == []  # still firing, no new trigger
    resolved = run(engine, "cc", start=5)
    assert [t.kind for t in resolved] == ["resolve"]
    assert (
        resolved[0].dedup_key == trigger.dedup_key and resolved[0].started_at == trigger.started_at
    )


def test_clean_count_in_progress_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    engine = AlertEngine([rule(for_windows=1, resolve_after=3)], RecordingDispatch(), path)
    run(engine, "Bcc")
    engine = AlertEngine([rule(for_windows=1, resolve_after=3)], RecordingDispatch(), path)
    assert [t.kind for t in run(engine, "c", start=3)] == ["resolve"]


def test_undelivered_trigger_is_resent_after_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    crashed = RecordingDispatch(settle=False)  # queued, never sent: the process died
    engine = AlertEngine([rule(for_windows=1)], crashed, path)
    trigger = run(engine, "B")[0]
    assert [d.transition for d in engine.pending_deliveries()] == [trigger]

    restarted = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=1)], restarted, path)
    assert [d.transition for d in restarted.deliveries] == [trigger]
    assert engine.pending_deliveries() == []
    assert json.loads(path.read_text())["outbox"] == []


def test_pending_resolve_is_still_delivered_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    delivered = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=1, resolve_after=1)], delivered, path)
    run(engine, "B")
    engine._dispatch = crashed = RecordingDispatch(settle=False)
    resolve = run(engine, "c", start=1)[0]
    assert [d.transition.kind for d in crashed.deliveries] == ["resolve"]

    restarted = RecordingDispatch()
    engine = AlertEngine([rule(for_windows=1, resolve_after=1)], restarted, path)
    assert [d.transition for d in restarted.deliveries] == [resolve]
    assert engine.firing() == []
    assert restarted.transitions("trigger") == []


def test_a_given_up_delivery_leaves_the_outbox() -> None:
    dispatch = RecordingDispatch(settle=False)
    engine = AlertEngine([rule(for_windows=1)], dispatch, None)
    run(engine, "B")
    dispatch.settle_all(delivered=False)
    assert engine.pending_deliveries() == []


def test_state_file_is_valid_json_private_and_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "alerts.json"
    engine = AlertEngine([rule(for_windows=2)], RecordingDispatch(), path)
    run(engine, "B")
    doc = json.loads(path.read_text())
    assert doc["version"] == 1
    assert doc["alerts"] == [
        {
            "rule": "digits-drift",
            "model": "digits",
            "status": "inactive",
            "breaches": 1,
            "clean": 0,
            "last_at": "2026-11-26T12:00:00.000000Z",
            "active": None,
        }
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alerts.json"]  # no temp file left


@pytest.mark.parametrize(
    "content",
    [
        "{",
        '{"version": 2, "alerts": [], "outbox": []}',
        '{"version": 1, "alerts": [{"status": "firing"}], "outbox": []}',
    ],
)
def test_unusable_state_file_is_an_error_not_a_silent_reset(tmp_path: Path, content: str) -> None:
    path = tmp_path / "alerts.json"
    path.write_text(content)
    with pytest.raises(StateFileError, match=f"alert state file {path} is unusable"):
        AlertEngine([rule()], RecordingDispatch(), path)


def test_state_of_a_removed_rule_is_dropped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alerts.json"
    engine = AlertEngine([rule(for_windows=1), rule(name="other")], RecordingDispatch(), path)
    run(engine, "B")
    engine = AlertEngine([rule(name="other")], RecordingDispatch(), path)
    assert engine.firing() == []
    assert "it was firing" in caplog.text
    assert [a["rule"] for a in json.loads(path.read_text())["alerts"]] == ["other"]


def test_unwritable_state_is_counted_and_alerting_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    engine = AlertEngine([rule(for_windows=1)], RecordingDispatch(), blocker / "alerts.json")
    assert [t.kind for t in run(engine, "B")] == ["trigger"]
    assert engine.persist_failures >= 1


# -- property: the machine agrees with a direct reading of the rule ------------------------------
def reference(pattern: list[bool], n: int, m: int) -> list[str]:
    """Triggers/resolves read off runs: fire at the n-th breach in a row, resolve at m-th clean."""
    out, firing, run_len = [], False, 0
    for breached in pattern:
        run_len = run_len + 1 if breached != firing else 0
        if not firing and run_len == n:
            out.append("trigger")
            firing, run_len = True, 0
        elif firing and run_len == m:
            out.append("resolve")
            firing, run_len = False, 0
    return out


@settings(max_examples=200, deadline=None)
@given(
    pattern=st.lists(st.booleans(), max_size=60),
    n=st.integers(1, 5),
    m=st.integers(1, 5),
)
def test_matches_reference_model(pattern: list[bool], n: int, m: int) -> None:
    engine = AlertEngine([rule(for_windows=n, resolve_after=m)], RecordingDispatch(), None)
    kinds = [t.kind for t in run(engine, "".join("B" if b else "c" for b in pattern))]
    assert kinds == reference(pattern, n, m)
    # Triggers and resolves alternate, starting with a trigger.
    assert all(k == ("trigger" if i % 2 == 0 else "resolve") for i, k in enumerate(kinds))
