"""The predictions table's sha256 and probabilities: stored exactly, bounded, and an older
database migrated forward when opened."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.events import InferenceEvent, ModelInfo
from infertrail.outcomes.index import PredictionIndex
from infertrail.outcomes.store import (
    MAX_PROBABILITY_CLASSES,
    SCHEMA_VERSION,
    OutcomeStore,
    OutcomeStoreError,
    Prediction,
    check_probabilities,
)

from .helpers import T0, outcome

#: The layout of schema version 0, as infertrail wrote it before sha256s and probabilities.
V0_SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    ts_ns INTEGER NOT NULL,
    model TEXT NOT NULL,
    version TEXT NOT NULL,
    label TEXT,
    score REAL,
    confidence REAL,
    decision TEXT,
    latency_ms REAL NOT NULL,
    team TEXT NOT NULL,
    endpoint TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS predictions_by_model_time ON predictions (model, version, ts_ns);
CREATE TABLE IF NOT EXISTS outcomes (
    request_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT,
    value REAL,
    ts_ns INTEGER NOT NULL,
    received_ns INTEGER NOT NULL,
    PRIMARY KEY (request_id, kind)
) WITHOUT ROWID;
"""
DIGITS = ModelInfo("digits", "2", "b" * 64)


def old_database(path: Path) -> None:
    """A version 0 database with three predictions and one outcome, as the old code left it."""
    conn = sqlite3.connect(path)
    conn.executescript(V0_SCHEMA)
    conn.executemany(
        "INSERT INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (f"r{i}", T0 + i, "credit", "1.0.0", "approve", 0.8, 0.9, "approve", 3.0, "risk", "/s")
            for i in range(3)
        ],
    )
    conn.execute("INSERT INTO outcomes VALUES ('r0', 'label', '1', 1.0, ?, ?)", (T0, T0))
    conn.commit()
    conn.close()


def columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(predictions)")]


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def test_an_old_database_is_migrated_forward(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old_database(old)
    assert user_version(old) == 0
    store = OutcomeStore(old)
    assert user_version(old) == SCHEMA_VERSION == 1
    fresh = tmp_path / "fresh.db"
    OutcomeStore(fresh).close()
    assert columns(old) == columns(fresh)  # the same layout as a new database
    # the old rows are intact; they simply have neither sha256 nor probabilities
    p = store.prediction("r1")
    assert p is not None and (p.score, p.team, p.endpoint) == (0.8, "risk", "/s")
    assert p.model_sha256 is None and p.probabilities is None
    [joined] = store.joined(kind="label")
    assert joined.prediction.request_id == "r0" and joined.outcome.label == "1"
    # new predictions keep both, beside the old ones
    store.add_predictions(
        [
            Prediction(
                "n0",
                T0 + 9,
                "credit",
                "1.0.0",
                "approve",
                0.7,
                None,
                None,
                1.0,
                model_sha256="a" * 64,
                probabilities={"0": 0.3, "1": 0.7},
            )
        ]
    )
    rows = store.scored_predictions(model="credit", version="1.0.0", kind="label")
    assert rows.model_sha256 == [None, None, None, "a" * 64]
    assert rows.outcome_label == ["1", None, None, None]
    store.close()
    # opening it again changes nothing
    again = OutcomeStore(old)
    assert again.counts() == {"predictions": 4, "outcomes": 1}
    n0 = again.prediction("n0")
    assert n0 is not None and n0.probabilities == {"0": 0.3, "1": 0.7}
    again.close()


def test_concurrent_openers_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_database(path)
    errors: list[BaseException] = []
    stores: list[OutcomeStore] = []
    start = threading.Barrier(4)

    def open_it() -> None:
        start.wait()
        try:
            stores.append(OutcomeStore(path))
        except BaseException as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(stores) == 4
    assert columns(path).count("probabilities") == 1
    for s in stores:
        s.close()


def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(OutcomeStoreError, match=r"schema version 2, newer than this .* 1"):
        OutcomeStore(path)
    assert user_version(path) == SCHEMA_VERSION + 1  # untouched


labels = st.text(min_size=1, max_size=12)
probabilities = st.dictionaries(
    labels, st.floats(allow_nan=False, width=64), min_size=1, max_size=12
)


@settings(max_examples=40, deadline=None)
@given(first=probabilities, second=probabilities)
def test_probabilities_round_trip_exactly(tmp_path_factory: Any, first: Any, second: Any) -> None:
    store = OutcomeStore(tmp_path_factory.mktemp("p") / "o.db")
    try:
        store.add_predictions(
            [
                Prediction("a", T0, "m", "1", None, None, None, None, 1.0, probabilities=first),
                Prediction("b", T0, "m", "1", None, None, None, None, 1.0, probabilities=second),
                Prediction("c", T0, "m", "1", None, None, None, None, 1.0, probabilities=first),
            ]
        )
        for rid, expected in (("a", first), ("b", second), ("c", first)):
            p = store.prediction(rid)
            assert p is not None and p.probabilities == expected
            assert list(p.probabilities) == list(expected)  # the order of the classes too
        (sets,) = store._conn.execute("SELECT COUNT(*) FROM probability_labels").fetchone()
        assert sets == len({tuple(first), tuple(second)})  # one row per distinct label set
    finally:
        store.close()


def test_a_failed_batch_leaves_no_stale_label_set(tmp_path: Path) -> None:
    """A label set id of a rolled-back batch is not remembered: SQLite hands it out again."""
    store = OutcomeStore(tmp_path / "o.db")
    a, b = {"x": 0.1, "y": 0.9}, {"u": 0.5, "v": 0.5}

    def pred(rid: str, probs: dict[str, float], team: Any = "") -> Prediction:
        return Prediction(rid, T0, "m", "1", None, None, None, None, 1.0, team, probabilities=probs)

    with pytest.raises(sqlite3.Error):
        store.add_predictions([pred("bad", a, team=object())])  # cannot be bound: rolled back
    store.add_predictions([pred("p1", b)])
    store.add_predictions([pred("p2", a)])
    assert (store.prediction("p1") or pred("", {})).probabilities == b
    assert (store.prediction("p2") or pred("", {})).probabilities == a
    store.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([0.5, 0.5], "must map class labels to numbers, got list"),
        ({}, f"must name 1 to {MAX_PROBABILITY_CLASSES} classes, got 0"),
        ({str(i): 0.0 for i in range(MAX_PROBABILITY_CLASSES + 1)}, "got 1025"),
        ({1: 0.5}, "labels must be strings of 1 to 256 characters, got '1'"),
        ({"": 0.5}, "labels must be strings"),
        ({"x" * 257: 0.5}, "labels must be strings"),
        ({"a": "0.5"}, "the probability of 'a' must be a number, got '0.5'"),
        ({"a": True}, "must be a number, got True"),
    ],
)
def test_bad_probabilities(value: Any, message: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        check_probabilities(value)
    store = OutcomeStore(tmp_path / "o.db")
    good = Prediction("good", T0, "m", "1", None, None, None, None, 1.0)
    bad = Prediction("bad", T0, "m", "1", None, None, None, None, 1.0, probabilities=value)
    with pytest.raises(ValueError, match=f"prediction 'bad': .*{message}"):
        store.add_predictions([good, bad])
    assert store.counts()["predictions"] == 0  # nothing of the batch was written
    store.close()


def test_the_limit_itself_is_accepted() -> None:
    check_probabilities({str(i): math.nan for i in range(MAX_PROBABILITY_CLASSES)})


def event(rid: str, probabilities: Any) -> InferenceEvent:
    return InferenceEvent(
        model=DIGITS,
        request_id=rid,
        service="svc",
        team="t",
        endpoint="/v1/digits",
        inputs=None,
        input_size=64,
        start_time_ns=T0,
        label="7",
        confidence=0.9,
        probabilities=probabilities,
    )


def test_the_index_keeps_sha256_and_bounded_probabilities(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = OutcomeStore(tmp_path / "o.db")
    index = PredictionIndex(store, start=False)
    given_probs = {"7": 0.9, "1": 0.1}
    ok = event("ok", given_probs)
    index(ok)
    given_probs["7"] = 0.0  # the service's dict changing later does not reach the index
    index(event("huge", {str(i): 0.0 for i in range(MAX_PROBABILITY_CLASSES + 1)}))
    index(event("words", {"7": "high"}))
    index(event("none", None))
    index.flush()
    assert index.probabilities_dropped == 2 and index.indexed == 4
    assert "probabilities of digits not indexed" in caplog.text
    kept = store.prediction("ok")
    assert kept is not None and kept.probabilities == {"7": 0.9, "1": 0.1}
    assert kept.model_sha256 == "b" * 64
    for rid in ("huge", "words", "none"):
        p = store.prediction(rid)
        assert p is not None and p.probabilities is None and p.label == "7"
    index.close()
    store.close()


def test_outcomes_join_predictions_with_probabilities(tmp_path: Path) -> None:
    store = OutcomeStore(tmp_path / "o.db")
    store.add_predictions(
        [
            Prediction(
                "r0", T0, "m", "1", "a", None, 0.6, None, 1.0, probabilities={"a": 0.6, "b": 0.4}
            )
        ]
    )
    result = store.write_outcomes([outcome("r0", "b")], received_ns=T0)
    [(_, joined)] = result.accepted
    assert joined.probabilities == {"a": 0.6, "b": 0.4}
    [row] = store.joined(kind="label")
    assert row.prediction == joined and row.outcome.label == "b"
    store.close()
