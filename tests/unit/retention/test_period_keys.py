"""Period keys in the keyring: one per purpose and UTC month, kept until a day, destroyable."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from infertrail.keyring import (
    KeyDestroyedError,
    Keyring,
    KeyringError,
    keep_until,
    month_of,
    period_key_id,
)
from tests.unit.retention.conftest import MARCH, MARCH_KEEP_UNTIL, Clock, open_keyring

INPUT = "input-hmac"


def at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("moment", "month"),
    [
        (at(2026, 3, 1), "2026-03"),
        (at(2026, 3, 31, 23, 59, 59) + 0.999999, "2026-03"),
        (at(2026, 4, 1), "2026-04"),
        (at(1999, 12, 31, 23, 59, 59), "1999-12"),
    ],
)
def test_month_of_is_the_utc_month(moment: float, month: str) -> None:
    assert month_of(moment) == month


@pytest.mark.parametrize(
    ("period", "days", "until"),
    [
        ("2026-03", 184, date(2026, 10, 1)),  # 31 March + 184 days
        ("2026-12", 7, date(2027, 1, 7)),  # across the year
        ("2028-02", 0, date(2028, 2, 29)),  # a leap February's last day
        ("2026-02", 1, date(2026, 3, 1)),
    ],
)
def test_keep_until_is_the_months_last_day_plus_the_days(
    period: str, days: int, until: date
) -> None:
    assert keep_until(period, days) == until


def test_a_key_per_month_kept_until_the_months_last_day_plus_its_days(tmp_path: Path) -> None:
    clock = Clock()
    ring = open_keyring(tmp_path / "k.json", clock)
    march_id, march = ring.period_key(INPUT, at(2026, 3, 10))
    assert march_id == "input-hmac@2026-03" == period_key_id(INPUT, "2026-03")
    assert ring.period_key(INPUT, at(2026, 3, 31, 23, 59, 59)) == (march_id, march)
    april_id, april = ring.period_key(INPUT, at(2026, 4, 1))
    assert april_id == "input-hmac@2026-04" and april != march
    assert ring.period_key(INPUT, at(2026, 3, 2)) == (march_id, march)  # a late March record
    (m, a) = ring.period_keys(INPUT)
    assert (m.key_id, m.period, m.keep_until.isoformat()) == (march_id, "2026-03", MARCH_KEEP_UNTIL)
    assert (a.period, a.keep_until, a.live) == ("2026-04", date(2026, 10, 31), True)
    # Durable: a fresh keyring on the same file has the same secrets.
    again = open_keyring(tmp_path / "k.json", clock)
    assert again.get(march_id) == march and again.period_key(INPUT, at(2026, 4, 9))[1] == april


def test_active_is_the_current_months_key_and_periodic_purposes_do_not_rotate(
    tmp_path: Path,
) -> None:
    clock = Clock(MARCH)
    ring = open_keyring(tmp_path / "k.json", clock)
    assert ring.active(INPUT)[0] == "input-hmac@2026-03"
    clock.set(datetime(2026, 5, 1, tzinfo=UTC))
    assert ring.active(INPUT)[0] == "input-hmac@2026-05"
    assert ring.active("subject-hmac")[0] == "subject-hmac-1"  # not periodic: as before
    with pytest.raises(KeyringError, match="rotate by themselves every month"):
        ring.rotate(INPUT)
    with pytest.raises(KeyringError, match="'subject-hmac' is not periodic"):
        ring.period_key("subject-hmac", at(2026, 3, 1))


def test_a_longer_retention_extends_a_key_a_shorter_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    short = Keyring(path, periodic={INPUT: 184})
    key_id, secret = short.period_key(INPUT, at(2026, 3, 10))
    long = Keyring(path, periodic={INPUT: 762})  # reg-b-25m, e.g. after a settings change
    assert long.period_key(INPUT, at(2026, 3, 11)) == (key_id, secret)
    assert Keyring(path).period_keys()[0].keep_until == date(2028, 5, 1)  # 31 March + 762
    short.reload()
    short.period_key(INPUT, at(2026, 3, 12))
    assert Keyring(path).period_keys()[0].keep_until == date(2028, 5, 1)  # never shortened


def test_concurrent_first_uses_create_one_key(tmp_path: Path) -> None:
    rings = [Keyring(tmp_path / "k.json", periodic={INPUT: 184}) for _ in range(8)]
    got: list[tuple[str, bytes]] = []
    threads = [
        threading.Thread(target=lambda r=r: got.append(r.period_key(INPUT, at(2026, 3, 1))))
        for r in rings
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1
    assert len(Keyring(tmp_path / "k.json").period_keys()) == 1


def test_destroy_only_after_keep_until_then_the_secret_is_gone(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    ring = open_keyring(path, Clock())
    key_id, secret = ring.period_key(INPUT, at(2026, 3, 10))
    with pytest.raises(KeyringError, match="must be kept until 2026-10-01 inclusive"):
        ring.destroy(key_id, today=date(2026, 10, 1))
    assert ring.destroy(key_id, today=date(2026, 10, 2)) is True
    assert ring.destroy(key_id, today=date(2026, 10, 3)) is False  # idempotent
    with pytest.raises(KeyDestroyedError, match="'input-hmac@2026-03' was destroyed at"):
        ring.get(key_id)
    with pytest.raises(KeyDestroyedError):
        ring.period_key(INPUT, at(2026, 3, 11))  # nothing more is written for March
    assert key_id not in ring.key_ids(INPUT)
    text = path.read_text()
    assert secret.hex() not in text and json.loads(text)["keys"][key_id]["destroyed"]
    fresh = Keyring(path)
    with pytest.raises(KeyDestroyedError):
        fresh.get(key_id)
    (tomb,) = fresh.period_keys()
    assert not tomb.live and tomb.receipt_seq is None
    fresh.record_destruction([key_id], 42)
    assert Keyring(path).period_keys()[0].receipt_seq == 42


def test_destroying_is_refused_for_keys_that_are_not_period_keys(tmp_path: Path) -> None:
    ring = open_keyring(tmp_path / "k.json", Clock())
    subject_key, _ = ring.active("subject-hmac")
    with pytest.raises(KeyringError, match="'subject-hmac-1' is not a period key"):
        ring.destroy(subject_key, today=date(2099, 1, 1))
    with pytest.raises(KeyringError, match="'nope' is not a period key"):
        ring.destroy("nope", today=date(2099, 1, 1))
    with pytest.raises(KeyringError, match="is not a destroyed key"):
        ring.record_destruction([subject_key], 1)
    assert ring.get(subject_key)


def test_another_process_destroying_a_key_is_seen_after_reload(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    server = open_keyring(path, Clock())
    key_id, _ = server.period_key(INPUT, at(2026, 3, 10))
    assert open_keyring(path, Clock()).destroy(key_id, today=date(2026, 10, 2))
    server.reload()
    with pytest.raises(KeyDestroyedError):
        server.period_key(INPUT, at(2026, 3, 10))


def test_bad_periodic_settings_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="must be >= 0"):
        Keyring(tmp_path / "k.json", periodic={INPUT: -1})
    with pytest.raises(KeyringError, match="key purpose must be"):
        Keyring(tmp_path / "k.json", periodic={"in put": 1})
