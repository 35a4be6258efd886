"""The witness publisher against real witnesses (the witness app under uvicorn, on loopback)
and a real AuditLog: cosignatures kept, quorum, 409 recovery, refusals (rollback, fork),
witnesses down or misconfigured, metrics and health."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from infertrail.audit.checkpoint import NoteSigner, NoteVerifier, split_note
from infertrail.audit.cosignature import CosignatureSigner, WitnessPolicy
from infertrail.audit.cosigned import CosignedStore
from infertrail.audit.ledger import AuditLog
from infertrail.runtime.witnesses import WitnessClient, WitnessPublisher
from infertrail.telemetry import conventions as c
from tests.unit.witness.helpers import WitnessServer, free_port, new_signer, new_witness

ORIGIN = "log.test/witnessed"


class Fixture:
    """A log directory, its key, and witnesses served on loopback."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.signer: NoteSigner = new_signer(ORIGIN)
        self.keys: list[CosignatureSigner] = [new_witness(f"witness.test/w{i}") for i in (1, 2, 3)]
        self.servers: list[WitnessServer] = []
        self.log_dir = root / "log"
        self.reader = InMemoryMetricReader()
        self.meter = MeterProvider(metric_readers=[self.reader]).get_meter("test")

    def serve(self, index: int, log_keys: list[str] | None = None) -> WitnessServer:
        server = WitnessServer(
            self.root / f"witness{index}.state",
            self.keys[index],
            log_keys if log_keys is not None else [self.signer.verifier_key],
        )
        self.servers.append(server)
        return server

    def open_log(self, log_dir: Path | None = None) -> AuditLog:
        return AuditLog.open(
            log_dir or self.log_dir,
            signer=self.signer,
            origin=ORIGIN,
            fsync=False,
            checkpoint_interval_ms=3_600_000,
        )

    def publisher(
        self, log: AuditLog, urls: list[str], quorum: int = 2, keys: list[str] | None = None
    ) -> WitnessPublisher:
        vkeys = keys or [k.verifier_key for k in self.keys]
        policy = WitnessPolicy.of(vkeys, quorum)
        store = CosignedStore(log.log_dir, fsync=False)
        clients = [
            WitnessClient(url, verifier, 5.0, cosigned=store.witness_note(verifier.name))
            for url, verifier in zip(urls, policy.witnesses, strict=True)
        ]
        return WitnessPublisher(
            lambda: log.latest_checkpoint,
            log.consistency_proof,
            clients,
            policy,
            store,
            interval_s=3600,
            meter=self.meter,
        )

    def requests(self) -> dict[tuple[str, str], int]:
        out: dict[tuple[str, str], int] = {}
        data = self.reader.get_metrics_data()
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == c.METRIC_AUDIT_WITNESS_REQUESTS:
                        for point in metric.data.data_points:
                            a = point.attributes
                            key = (str(a[c.AUDIT_WITNESS_NAME]), str(a[c.AUDIT_WITNESS_RESULT]))
                            out[key] = int(point.value)
        return out

    def gauge(self, name: str) -> list[tuple[dict[str, Any], float]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        return [
            (dict(point.attributes or {}), point.value)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def fx(tmp_path: Path) -> Iterator[Fixture]:
    fixture = Fixture(tmp_path)
    yield fixture
    for server in fixture.servers:
        server.stop()


def grow(log: AuditLog, start: int, count: int) -> None:
    for i in range(start, start + count):
        log.append({"event_type": "inference", "n": i})
    log.flush()


def test_a_quorum_publishes_and_later_checkpoints_extend(fx: Fixture) -> None:
    urls = [fx.serve(i).url for i in range(3)]
    with fx.open_log() as log:
        grow(log, 0, 10)
        publisher = fx.publisher(log, urls)
        answers = publisher.publish()
        assert {n: a.result for n, a in answers.items()} == {
            f"witness.test/w{i}": "cosigned" for i in (1, 2, 3)
        }
        store = CosignedStore(fx.log_dir)
        published = store.published()
        assert published is not None
        NoteVerifier.from_key(fx.signer.verifier_key).verify(published)
        assert set(publisher.policy.cosignatures(published)) == {w.name for w in publisher.clients}
        assert publisher.published_size == 10 and publisher.health().ok
        assert publisher.publish() == {}  # nothing new: no witness is asked again
        grow(log, 10, 25)
        assert all(a.result == "cosigned" for a in publisher.publish().values())
        assert publisher.published_size == 35 and publisher.unpublished() == 0
        for server in fx.servers:  # each witness extended its own state with the proof
            kept = server.witness.checkpoint(ORIGIN)
            assert kept is not None and split_note(kept)[0].split(b"\n")[1] == b"35"
        assert fx.requests() == {(f"witness.test/w{i}", "cosigned"): 2 for i in (1, 2, 3)}
        sizes = {
            a[c.AUDIT_WITNESS_NAME]: v for a, v in fx.gauge(c.METRIC_AUDIT_WITNESS_COSIGNED_SIZE)
        }
        assert sizes == {f"witness.test/w{i}": 35 for i in (1, 2, 3)}
        assert fx.gauge(c.METRIC_AUDIT_WITNESS_UNPUBLISHED) == [({}, 0)]
        assert len(store.history()) == 1  # one kept per minute at most
        publisher.close()


def test_a_client_that_forgot_follows_the_409(fx: Fixture) -> None:
    urls = [fx.serve(0).url]
    keys = [fx.keys[0].verifier_key]
    with fx.open_log() as log:
        grow(log, 0, 7)
        first = fx.publisher(log, urls, quorum=1, keys=keys)
        assert first.publish()["witness.test/w1"].result == "cosigned"
        first.close()
        shutil.rmtree(fx.log_dir / "checkpoints" / "witnesses")  # the log lost what it knew
        grow(log, 7, 5)
        second = fx.publisher(log, urls, quorum=1, keys=keys)
        assert second.clients[0].size == 0
        answer = second.publish()["witness.test/w1"]
        assert answer.result == "cosigned" and second.clients[0].size == 12
        second.close()


def test_a_rolled_back_log_is_refused(fx: Fixture) -> None:
    urls = [fx.serve(0).url]
    keys = [fx.keys[0].verifier_key]
    saved = fx.root / "saved"
    with fx.open_log() as log:
        grow(log, 0, 5)
    shutil.copytree(fx.log_dir, saved)
    with fx.open_log() as log:
        grow(log, 5, 10)
        publisher = fx.publisher(log, urls, quorum=1, keys=keys)
        assert publisher.publish()["witness.test/w1"].result == "cosigned"  # size 15
        publisher.close()
    shutil.rmtree(fx.log_dir)
    shutil.copytree(saved, fx.log_dir)  # the operator restores the older state: 5 records
    with fx.open_log() as log:
        grow(log, 5, 3)  # and goes on from there: size 8, below what the witness cosigned
        publisher = fx.publisher(log, urls, quorum=1, keys=keys)
        answer = publisher.publish()["witness.test/w1"]
        assert (
            answer.result == "refused" and "cosigned size 15, beyond this log's 8" in answer.detail
        )
        health = publisher.health()
        assert not health.ok and not health.required
        assert "quorum not reached" in health.reason and "refused" in health.reason
        assert publisher.unpublished() == 8
        publisher.close()


def test_a_forked_log_is_refused(fx: Fixture) -> None:
    urls = [fx.serve(0).url]
    keys = [fx.keys[0].verifier_key]
    with fx.open_log() as log:
        grow(log, 0, 10)
        publisher = fx.publisher(log, urls, quorum=1, keys=keys)
        assert publisher.publish()["witness.test/w1"].result == "cosigned"
        publisher.close()
    # Someone with the log's key builds another history: the first 4 records, then others.
    forked = fx.root / "forked"
    with fx.open_log(forked) as log:
        grow(log, 0, 4)
        for i in range(4, 12):
            log.append({"event_type": "inference", "n": i, "forged": True})
        log.flush()
        publisher = fx.publisher(log, urls, quorum=1, keys=keys)
        answer = publisher.publish()["witness.test/w1"]
        assert answer.result == "refused" and answer.detail.startswith("422")
        assert "the log was forked" in answer.detail
        publisher.close()
    # The same size with another root: 409 naming the size sent.
    same = fx.root / "same-size"
    with fx.open_log(same) as log:
        grow(log, 0, 4)
        for i in range(4, 10):
            log.append({"event_type": "inference", "n": i, "forged": True})
        log.flush()
        shutil.copytree(
            fx.log_dir / "checkpoints" / "witnesses", same / "checkpoints" / "witnesses"
        )
        publisher = fx.publisher(log, urls, quorum=1, keys=keys)
        answer = publisher.publish()["witness.test/w1"]
        assert answer.result == "refused" and "another tree of size 10" in answer.detail
        publisher.close()
    assert fx.requests()[("witness.test/w1", "refused")] == 2


def test_witness_down_quorum_reached_without_it(fx: Fixture) -> None:
    urls = [fx.serve(0).url, fx.serve(1).url, f"http://127.0.0.1:{free_port()}"]
    with fx.open_log() as log:
        grow(log, 0, 6)
        publisher = fx.publisher(log, urls, quorum=2)
        answers = publisher.publish()
        assert answers["witness.test/w3"].result == "unreachable"
        assert publisher.published_size == 6  # 2 of 3 cosigned
        health = publisher.health()
        assert not health.ok and "witness.test/w3: unreachable" in health.reason
        assert "quorum not reached" not in health.reason and "127.0.0.1" not in health.reason
        publisher.close()


def test_quorum_not_reached_publishes_nothing(fx: Fixture) -> None:
    urls = [fx.serve(0).url, f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"]
    with fx.open_log() as log:
        grow(log, 0, 6)
        publisher = fx.publisher(log, urls, quorum=2)
        publisher.publish()
        assert CosignedStore(fx.log_dir).published() is None
        assert publisher.published_size == 0 and publisher.unpublished() == 6
        reason = publisher.health().reason
        assert reason.startswith("quorum not reached: 1 of the 2 needed cosigned size 6")
        publisher.close()


def test_misconfigured_witnesses(fx: Fixture) -> None:
    stranger = new_signer("log.test/other")
    knows_another_log = fx.serve(0, log_keys=[stranger.verifier_key]).url
    wrong_key = fx.serve(1).url  # answers with w2's key; the log expects another w2 key
    impostor = new_witness("witness.test/w2")
    with fx.open_log() as log:
        grow(log, 0, 3)
        keys = [fx.keys[0].verifier_key, impostor.verifier_key]
        publisher = fx.publisher(log, [knows_another_log, wrong_key], quorum=1, keys=keys)
        answers = publisher.publish()
        assert answers["witness.test/w1"].result == "rejected"
        assert answers["witness.test/w1"].detail.startswith("404")
        assert answers["witness.test/w2"].result == "bad_response"
        assert "without its valid cosignature" in answers["witness.test/w2"].detail
        assert CosignedStore(fx.log_dir).witness_note("witness.test/w2") is None
        publisher.close()


def test_publisher_remembers_what_was_published(fx: Fixture) -> None:
    urls = [fx.serve(i).url for i in range(3)]
    with fx.open_log() as log:
        grow(log, 0, 4)
        first = fx.publisher(log, urls)
        first.publish()
        first.close()
        again = fx.publisher(log, urls)
        assert again.published_size == 4 and [w.size for w in again.clients] == [4, 4, 4]
        assert again.publish() == {}
        again.close()
