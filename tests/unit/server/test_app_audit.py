"""The sentiment service writes one durable, verifiable audit record per decision."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from infertrail.audit.canonical import canonicalize
from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import verifier_key_path
from infertrail.audit.record import validate_record
from infertrail.audit.verify import verify_log
from infertrail.config import Settings
from infertrail.runtime.audit import INPUT_KEY_PURPOSE
from infertrail.server.app import DemoService, build_services, create_app


@pytest.fixture
def services(settings: Settings) -> Iterator[DemoService]:
    s = build_services(settings)
    yield s
    s.close()


def test_each_decision_is_durable_before_the_response_and_verifies(
    services: DemoService, settings: Settings
) -> None:
    texts = ["I love it", "Terrible battery", "ok I guess"]
    with TestClient(create_app(services)) as client:
        bodies = [client.post("/v1/sentiment", json={"text": t}).json() for t in texts]
        bad = client.post("/v1/sentiment", json={"text": ""})
        assert bad.status_code == 422 and "audit_seq" not in bad.json()
    assert [b["audit_seq"] for b in bodies] == [0, 1, 2]
    trail = services.runtime.audit
    assert trail is not None
    assert trail.log.size == 3  # the rejected request is not a decision

    key_id, key = trail.keyring.active(INPUT_KEY_PURPOSE)
    for body, text in zip(bodies, texts, strict=True):
        ((seq, raw),) = trail.log.read(body["audit_seq"], body["audit_seq"] + 1)
        record = json.loads(raw)
        validate_record(record)
        assert record["seq"] == seq
        assert record["request_id"] == body["request_id"]
        assert record["trace_id"] == body["trace_id"]
        assert record["model_sha256"] == body["model"]["sha256"]
        assert record["decision"] == body["label"]
        assert record["input_hmac_key_id"] == key_id
        expected = hmac.new(key, canonicalize(text), hashlib.sha256).hexdigest()
        assert record["input_hmac"] == expected
        assert text not in raw.decode()  # no raw input in the long-term log

    services.close()  # seals the lake and writes the final checkpoint
    vkey = verifier_key_path(settings.signing_key_file).read_text().strip()
    report = verify_log(settings.audit_log_dir, settings.lake_url, NoteVerifier.from_key(vkey))
    assert report.ok, report


def test_audit_failure_means_no_decision_is_returned(services: DemoService) -> None:
    trail = services.runtime.audit
    assert trail is not None
    with TestClient(create_app(services)) as client:
        assert client.post("/v1/sentiment", json={"text": "fine"}).status_code == 200
        trail.log.close()  # the log is gone: a decision can no longer be recorded
        r = client.post("/v1/sentiment", json={"text": "fine"})
    assert r.status_code == 503
    assert r.json()["error"] == "audit_unavailable"


def test_an_erased_applicant_gets_409_not_a_new_pseudonym(services: DemoService) -> None:
    from infertrail.audit.record import Actor
    from infertrail.models import credit

    trail = services.runtime.audit
    assert trail is not None
    application = credit.as_application(credit.load_dataset().X[0])
    body = {"applicant_id": "applicant-42", **application}
    with TestClient(create_app(services)) as client:
        assert client.post("/v1/credit/score", json=body).status_code == 200
        trail.privacy.erase("applicant-42", Actor(id="dpo-1", role="compliance"), "GDPR Art. 17")
        r = client.post("/v1/credit/score", json=body)
    assert r.status_code == 409
    assert r.json()["error"] == "subject_erased"
    assert "applicant-42" not in r.text
