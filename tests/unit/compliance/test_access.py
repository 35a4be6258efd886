"""Users, API keys (hashed at rest), the role matrix and the per-key token bucket."""

from __future__ import annotations

import hashlib
import itertools
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.compliance.access import (
    PERMISSIONS,
    ROLES,
    AccessDenied,
    Permission,
    RateLimited,
    RateLimiter,
    Unauthenticated,
    UserExistsError,
    UserStore,
    check_role,
    users_db_path,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[UserStore]:
    s = UserStore(users_db_path(tmp_path / "data"))
    yield s
    s.close()


def test_add_authenticate_list_revoke(store: UserStore) -> None:
    user, key = store.add("staff-42", "compliance")
    assert key.startswith("itk_") and len(key) == 47
    assert user.role == "compliance" and user.active
    assert store.authenticate(key).name == "staff-42"
    assert [u.name for u in store.list()] == ["staff-42"]
    revoked = store.revoke("staff-42")
    assert not revoked.active and revoked.revoked is not None
    with pytest.raises(Unauthenticated, match="revoked"):
        store.authenticate(key)
    assert store.revoke("staff-42").revoked == revoked.revoked  # idempotent


def test_keys_are_unique_and_random(store: UserStore) -> None:
    keys = {store.add(f"u{i}", "auditor")[1] for i in range(20)}
    assert len(keys) == 20


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "required"),
        ("", "required"),
        ("not-a-key", "malformed"),
        ("itk_" + "A" * 42, "malformed"),
        ("itk_" + "A" * 43, "unknown"),
    ],
)
def test_authenticate_rejects(store: UserStore, key: str | None, message: str) -> None:
    store.add("staff-1", "auditor")
    with pytest.raises(Unauthenticated, match=message) as info:
        store.authenticate(key)
    assert info.value.status == 401


@pytest.mark.parametrize("name", ["", "-leading", "has space", "x" * 65, "semi;colon", "ü"])
def test_bad_user_names_are_refused(store: UserStore, name: str) -> None:
    with pytest.raises(ValueError, match="user name must be"):
        store.add(name, "auditor")


def test_bad_role_is_refused_naming_the_valid_ones(store: UserStore) -> None:
    with pytest.raises(ValueError, match="engineer, auditor, compliance, admin"):
        store.add("staff-1", "root")


def test_names_are_never_reused(store: UserStore) -> None:
    store.add("staff-1", "auditor")
    with pytest.raises(UserExistsError, match="active"):
        store.add("staff-1", "admin")
    store.revoke("staff-1")
    with pytest.raises(UserExistsError, match="revoked"):
        store.add("staff-1", "admin")


def test_revoke_unknown_user(store: UserStore) -> None:
    with pytest.raises(LookupError, match="no user 'ghost'"):
        store.revoke("ghost")


def test_keys_never_stored_in_plaintext(tmp_path: Path) -> None:
    data = tmp_path / "data"
    store = UserStore(users_db_path(data))
    keys = [store.add(f"staff-{i}", role)[1] for i, role in enumerate(ROLES)]
    store.revoke("staff-0")
    store.close()
    blobs = b"".join(p.read_bytes() for p in data.rglob("*") if p.is_file())
    for key in keys:
        assert key.encode() not in blobs
        assert key[4:].encode() not in blobs  # not even without its prefix
        assert hashlib.sha256(key.encode()).digest() in blobs  # what is stored instead


def test_database_is_private(tmp_path: Path) -> None:
    path = users_db_path(tmp_path / "data")
    UserStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_revocation_is_seen_by_another_store_at_once(tmp_path: Path) -> None:
    path = users_db_path(tmp_path / "data")
    server, cli = UserStore(path), UserStore(path)
    _, key = cli.add("staff-1", "auditor")
    assert server.authenticate(key).name == "staff-1"
    cli.revoke("staff-1")
    with pytest.raises(Unauthenticated):
        server.authenticate(key)
    server.close()
    cli.close()


def test_permission_matrix() -> None:
    assert PERMISSIONS["engineer"] == frozenset()
    assert PERMISSIONS["auditor"] == {Permission.READ_DECISIONS}
    assert PERMISSIONS["compliance"] == {
        Permission.READ_DECISIONS,
        Permission.RESOLVE_SUBJECT,
        Permission.ERASE,
    }
    assert PERMISSIONS["admin"] == set(Permission)
    # Roles are ordered: each has every permission of the ones before it.
    for lower, higher in itertools.pairwise(ROLES):
        assert PERMISSIONS[lower] <= PERMISSIONS[higher]


def test_check_role_names_allowed_roles() -> None:
    check_role("compliance", Permission.RESOLVE_SUBJECT)
    with pytest.raises(AccessDenied, match=r"allowed roles: \['compliance', 'admin'\]") as info:
        check_role("auditor", Permission.RESOLVE_SUBJECT)
    assert info.value.status == 403
    with pytest.raises(AccessDenied):
        check_role("superuser", Permission.READ_DECISIONS)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_token_bucket_burst_then_refill() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2.0, 3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimited) as info:
        limiter.take("a")
    assert info.value.status == 429
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.take("b")  # buckets are per user
    clock.t += 0.5
    limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")
    clock.t += 100
    for _ in range(3):  # refills to the burst, no more
        limiter.take("a")
    with pytest.raises(RateLimited):
        limiter.take("a")


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0)])
def test_rate_limiter_rejects_bad_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(rate, burst)


@settings(max_examples=50, deadline=None)
@given(
    rate=st.floats(0.1, 100),
    burst=st.integers(1, 20),
    steps=st.lists(st.floats(0, 2), min_size=1, max_size=60),
)
def test_token_bucket_never_exceeds_rate(rate: float, burst: int, steps: list[float]) -> None:
    """Over any schedule, granted requests <= burst + rate * elapsed."""
    clock = FakeClock()
    limiter = RateLimiter(rate, burst, clock=clock)
    start, granted = clock.t, 0
    for step in steps:
        clock.t += step
        try:
            limiter.take("u")
            granted += 1
        except RateLimited as exc:
            assert exc.retry_after > 0
    assert granted <= burst + rate * (clock.t - start) + 1e-9
