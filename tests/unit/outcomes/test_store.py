"""The outcomes database: idempotent upsert, atomic refusal of conflicts, unknown ids, join."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infertrail.outcomes.store import OutcomeConflictError, OutcomeStore

from .helpers import NS, T0, outcome, prediction


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OutcomeStore]:
    s = OutcomeStore(tmp_path / "outcomes" / "outcomes.db")
    s.add_predictions([prediction(f"r{i}") for i in range(5)])
    yield s
    s.close()


def test_new_repeat_and_unknown(store: OutcomeStore) -> None:
    first = store.write_outcomes(
        [outcome("r0", "1"), outcome("r1", "0"), outcome("nope", "1")], received_ns=T0
    )
    assert [o.request_id for o, _ in first.accepted] == ["r0", "r1"]
    assert first.accepted[0][1] == prediction("r0")  # joined to its prediction
    assert [o.request_id for o in first.unknown] == ["nope"]
    again = store.write_outcomes([outcome("r0", "1"), outcome("r2", "1")], received_ns=T0 + 1)
    assert [o.request_id for o in again.duplicates] == ["r0"]  # same value: a no-op
    assert [o.request_id for o, _ in again.accepted] == ["r2"]
    assert store.counts() == {"predictions": 5, "outcomes": 3}
    # another kind for the same request is its own outcome
    kpi = store.write_outcomes([outcome("r0", None, 120.5, kind="revenue")], received_ns=T0)
    assert len(kpi.accepted) == 1


def test_a_conflict_refuses_the_whole_batch(store: OutcomeStore) -> None:
    store.write_outcomes([outcome("r0", "1")], received_ns=T0)
    batch = [outcome("r1", "1"), outcome("r0", "0"), outcome("r2", "1")]
    with pytest.raises(OutcomeConflictError, match=r"1 outcome\(s\) differ.*r0 \(label\)") as info:
        store.write_outcomes(batch, received_ns=T0)
    [c] = info.value.conflicts
    assert c.as_json() == {
        "request_id": "r0",
        "kind": "label",
        "stored": {"label": "1", "value": 1.0},
        "received": {"label": "0", "value": 0.0},
    }
    assert store.counts()["outcomes"] == 1  # r1 and r2 were not written either
    assert [r.outcome.label for r in store.joined(kind="label")] == ["1"]  # nor r0 overwritten


def test_conflicts_inside_one_batch(store: OutcomeStore) -> None:
    with pytest.raises(OutcomeConflictError) as info:
        store.write_outcomes([outcome("r3", "1"), outcome("r3", "0")], received_ns=T0)
    assert info.value.conflicts[0].stored == {"label": "1", "value": 1.0}
    same = store.write_outcomes([outcome("r3", "1"), outcome("r3", "1")], received_ns=T0)
    assert (len(same.accepted), len(same.duplicates)) == (1, 1)


def test_a_failing_before_commit_writes_nothing(store: OutcomeStore) -> None:
    def fail_at_once(_pairs: object) -> Callable[[], None]:
        raise RuntimeError("audit log down")

    def fail_later(_pairs: object) -> Callable[[], None]:
        def finish() -> None:
            raise RuntimeError("audit record not durable")

        return finish

    with pytest.raises(RuntimeError, match="audit log down"):
        store.write_outcomes([outcome("r0", "1")], received_ns=T0, before_commit=fail_at_once)
    with pytest.raises(RuntimeError, match="not durable"):
        store.write_outcomes([outcome("r0", "1")], received_ns=T0, before_commit=fail_later)
    assert store.counts()["outcomes"] == 0
    seen: list[str] = []

    def record(pairs: list[Any]) -> Callable[[], None]:
        seen.append(f"queued {len(pairs)}")
        return lambda: seen.append(f"durable, {store_count()} inserted")

    def store_count() -> int:  # inside the transaction, on the same connection
        return int(store._conn.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0])

    store.write_outcomes([outcome("r0", "1")], received_ns=T0, before_commit=record)
    assert seen == ["queued 1", "durable, 1 inserted"] and store.counts()["outcomes"] == 1


def test_first_prediction_of_a_request_id_wins(store: OutcomeStore) -> None:
    store.add_predictions([prediction("r0", label="decline")])
    p = store.prediction("r0")
    assert p is not None and p.label == "approve"
    assert store.prediction("missing") is None


def test_joined_filters(tmp_path: Path) -> None:
    store = OutcomeStore(tmp_path / "o.db")
    store.add_predictions(
        [
            prediction("a", ts_ns=T0),
            prediction("b", ts_ns=T0 + 10 * NS, version="2"),
            prediction("c", ts_ns=T0 + 20 * NS, model="digits", label="3"),
        ]
    )
    store.write_outcomes([outcome("a"), outcome("b"), outcome("c", "3")], received_ns=T0)
    assert [r.prediction.request_id for r in store.joined(kind="label")] == ["a", "b", "c"]
    assert [
        r.prediction.request_id for r in store.joined(kind="label", model="credit", version="2")
    ] == ["b"]
    window = store.joined(kind="label", start_ns=T0 + NS, end_ns=T0 + 20 * NS)
    assert [r.prediction.request_id for r in window] == ["b"]  # [start, end)
    assert store.joined(kind="revenue") == []
    store.close()


def test_large_batches_and_concurrent_writers(tmp_path: Path) -> None:
    store = OutcomeStore(tmp_path / "o.db")
    store.add_predictions([prediction(f"r{i}") for i in range(3000)])
    errors: list[BaseException] = []

    def write(part: int) -> None:
        try:
            batch = [outcome(f"r{i}", str(i % 2)) for i in range(part, 3000, 3)]
            store.write_outcomes(batch, received_ns=T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and store.counts()["outcomes"] == 3000
    store.close()
