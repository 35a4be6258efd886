"""The request explorer through the demo service in-process: real requests, real telemetry
files, a real audit log and lake, the proof checked in the page; roles, twins, bad ids."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from infertrail.audit.keys import verifier_key_path
from infertrail.compliance.filters import TimeWindow
from infertrail.config import Settings
from infertrail.console.explorer_data import (
    find_inference,
    locate_seq,
    request_window,
    similar_requests,
)
from infertrail.console.pages.explorer import audit_section
from infertrail.events import new_request_id
from infertrail.server.app import DemoService, build_services, create_app

TEXTS = [
    "I love it, works great",
    "Terrible battery, broke in a week",
    "ok I guess",
    "Absolutely wonderful service",
    "awful, would not buy again",
    "great value and fast shipping",
]


@dataclass
class Demo:
    client: TestClient
    services: DemoService
    settings: Settings
    keys: dict[str, str]
    answers: list[dict[str, Any]]


def demo_settings(settings: Settings, **overrides: Any) -> Settings:
    """The session fixture's directories (trained models copied) with small drift windows."""
    return Settings(
        data_dir=settings.data_dir,
        metric_export_interval_ms=60_000,
        set_global_providers=False,
        traces_sampler="parentbased_always_on",
        drift_window_size=20,
        **overrides,
    )


def _login(client: TestClient, key: str) -> None:
    page = client.get("/ui/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', page.text)
    assert token is not None
    r = client.post(
        "/ui/login",
        data={"api_key": key, "login_csrf": token.group(1), "next": ""},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


@contextlib.contextmanager
def running_demo(settings: Settings, texts: list[str] = TEXTS) -> Iterator[Demo]:
    """The demo service in-process with ``texts`` scored, telemetry exported, one user per
    role (engineer, auditor)."""
    services = build_services(settings)
    try:
        runtime = services.runtime
        assert runtime.compliance is not None
        keys = {r: runtime.compliance.users.add(f"u-{r}", r)[1] for r in ("engineer", "auditor")}
        with TestClient(create_app(services), base_url="http://testserver") as client:
            answers = []
            for text in texts:
                r = client.post("/v1/sentiment", json={"text": text})
                assert r.status_code == 200, r.text
                answers.append(r.json())
            assert runtime.flush(10.0)
            yield Demo(client, services, settings, keys, answers)
    finally:
        services.close()


@pytest.fixture
def demo(settings: Settings) -> Iterator[Demo]:
    with running_demo(demo_settings(settings)) as d:
        yield d


def _access_records(demo: Demo) -> list[dict[str, Any]]:
    trail = demo.services.runtime.audit
    assert trail is not None
    trail.log.flush(5.0)
    records = [json.loads(raw) for _, raw in trail.log.read(0, trail.log.size)]
    return [r for r in records if r["event_type"] == "access_query"]


# -- the page --------------------------------------------------------------------------------


def test_an_auditor_follows_a_request_id_to_its_verified_proof(demo: Demo) -> None:
    _login(demo.client, demo.keys["auditor"])
    answer = demo.answers[1]
    before = len(_access_records(demo))
    r = demo.client.get("/ui/explorer.json", params={"id": answer["request_id"]})
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["found"] is True
    assert page["located"]["seq"] == answer["audit_seq"]
    assert page["located"]["trace_id"] == answer["trace_id"]
    assert page["located"]["decision"] == answer["label"]
    # The span tree of the request, from the telemetry files, with the inference span in it.
    tele = page["telemetry"]
    assert tele["available"] and tele["trace_id"] == answer["trace_id"]
    names = [s["name"] for s in tele["spans"]]
    assert any("inference" in n for n in names), names
    assert tele["spans"][0]["depth"] == 0 and all(s["duration_ms"] >= 0 for s in tele["spans"])
    assert any(s["label"] == answer["label"] for s in tele["spans"])
    # The record, its proof checked against the current signed checkpoint.
    record = page["record"]
    assert record["verified"] is True, record["reason"]
    assert record["fields"]["request_id"] == answer["request_id"]
    assert record["fields"]["decision"] == answer["label"]
    assert record["tree_size"] > answer["audit_seq"]
    # The model and its card.
    assert page["model"]["name"] == "sentiment"
    assert page["model"]["served_sha256"] == record["fields"]["model_sha256"]
    # Similar requests: same decision, the record itself left out, pseudonyms only.
    similar = page["similar"]
    assert all(row["decision"] == answer["label"] for row in similar["rows"])
    assert answer["audit_seq"] not in [row["seq"] for row in similar["rows"]]
    # Both reads were self-audited: the proof, then the similar requests.
    after = _access_records(demo)[before:]
    operations = [a["access_query"]["operation"] for a in after]
    assert operations == ["proof", "similar_requests"], after
    html = demo.client.get("/ui/explorer", params={"id": answer["request_id"]})
    assert html.status_code == 200
    assert "Verified" in html.text and "Does not verify" not in html.text
    assert answer["trace_id"] in html.text


def test_trace_id_and_seq_find_the_same_request(demo: Demo) -> None:
    _login(demo.client, demo.keys["auditor"])
    answer = demo.answers[2]
    by_trace = demo.client.get("/ui/explorer.json", params={"id": answer["trace_id"]}).json()
    by_seq = demo.client.get("/ui/explorer.json", params={"id": str(answer["audit_seq"])}).json()
    by_name = demo.client.get("/ui/explorer.json", params={"seq": answer["audit_seq"]}).json()
    for page in (by_trace, by_seq, by_name):
        assert page["located"]["request_id"] == answer["request_id"]
        assert page["record"]["verified"] is True


def test_an_engineer_sees_the_telemetry_and_never_the_record(demo: Demo) -> None:
    _login(demo.client, demo.keys["engineer"])
    answer = demo.answers[0]
    before = len(_access_records(demo))
    page = demo.client.get("/ui/explorer.json", params={"id": answer["request_id"]}).json()
    assert page["telemetry"]["available"] is True
    assert page["record"] is None and page["similar"] is None
    assert page["may_read_decisions"] is False
    assert "decision" not in page["located"] and "confidence" not in page["located"]
    assert len(_access_records(demo)) == before  # no proof was asked for
    html = demo.client.get("/ui/explorer", params={"id": answer["request_id"]}).text
    assert "need the <strong>auditor</strong> role" in html
    assert "input_hmac" not in html and "Verified" not in html


@pytest.mark.parametrize(
    ("params", "status", "names"),
    [
        ({"seq": "-1"}, 422, "seq"),
        ({"seq": "12x"}, 422, "seq"),
        ({"trace_id": "ABC"}, 422, "trace_id"),
        ({"request_id": "bad id with spaces"}, 422, "request_id"),
        ({"id": "x", "seq": "1"}, 400, "not id, seq"),
        ({"id": "some-id", "from": "yesterday"}, 422, "from"),
        ({"id": "some-id", "from": "2026-07-02", "to": "2026-07-01"}, 422, "to"),
    ],
)
def test_bad_ids_are_refused_naming_the_field(
    demo: Demo, params: dict[str, str], status: int, names: str
) -> None:
    _login(demo.client, demo.keys["auditor"])
    r = demo.client.get("/ui/explorer.json", params=params)
    assert r.status_code == status, r.text
    assert names in r.json()["detail"]


def test_unknown_requests_are_404_pages(demo: Demo) -> None:
    _login(demo.client, demo.keys["auditor"])
    for params in ({"id": new_request_id()}, {"id": "f" * 32}, {"seq": "999999"}):
        r = demo.client.get("/ui/explorer", params=params)
        assert r.status_code == 404, (params, r.text)
    assert (
        "not covered by the latest checkpoint"
        in demo.client.get("/ui/explorer.json", params={"seq": "999999"}).json()["detail"]
    )


def test_a_models_newest_requests_without_their_decisions(demo: Demo) -> None:
    _login(demo.client, demo.keys["auditor"])
    page = demo.client.get("/ui/explorer.json", params={"model": "sentiment"}).json()
    recent = page["recent"]
    assert [r["seq"] for r in recent["rows"]] == sorted(
        (a["audit_seq"] for a in demo.answers), reverse=True
    )
    assert [r["request_id"] for r in recent["rows"]][-1] == demo.answers[0]["request_id"]
    assert all(
        set(r) == {"seq", "ts", "request_id", "latency_ms", "status"} for r in recent["rows"]
    )
    version = demo.answers[0]["model"]["version"]
    same = demo.client.get("/ui/explorer.json", params={"model": "sentiment", "version": version})
    assert len(same.json()["recent"]["rows"]) == len(demo.answers)
    other = demo.client.get("/ui/explorer", params={"model": "sentiment", "version": "0.0-none"})
    assert other.status_code == 200 and "give a wider window" in other.text
    html = demo.client.get("/ui/explorer", params={"model": "sentiment"}).text
    assert f'href="/ui/explorer?seq={demo.answers[0]["audit_seq"]}"' in html
    bad = demo.client.get("/ui/explorer.json", params={"model": "x" * 300})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("model: ")


def test_the_empty_form_has_labelled_inputs(demo: Demo) -> None:
    _login(demo.client, demo.keys["engineer"])
    r = demo.client.get("/ui/explorer")
    assert r.status_code == 200
    for field in ("explore-id", "explore-from", "explore-to"):
        assert f'<label for="{field}">' in r.text and f'id="{field}"' in r.text
    assert demo.client.get("/ui/explorer.json").json()["found"] is False


# -- the proof check and the data functions --------------------------------------------------


def test_a_tampered_record_does_not_verify(demo: Demo) -> None:
    runtime = demo.services.runtime
    assert runtime.compliance is not None
    from infertrail.compliance.queries import Caller

    user = runtime.compliance.users.authenticate(demo.keys["auditor"])
    caller = Caller(user, "console")
    evidence, _ = runtime.compliance.queries.proof(caller, demo.answers[0]["audit_seq"])
    vkey = verifier_key_path(demo.settings.signing_key_file).read_text().strip()
    assert audit_section(evidence, vkey)["verified"] is True
    changed = dict(evidence)
    label = demo.answers[0]["label"]
    other = "negative" if label == "positive" else "positive"
    changed["record"] = evidence["record"].replace(f'"decision":"{label}"', f'"decision":"{other}"')
    assert changed["record"] != evidence["record"]
    section = audit_section(changed, vkey)
    assert section["verified"] is False
    assert section["fields"]["decision"] == other
    assert "leaf_hash" in section["reason"]
    # The leaf hash recomputed too: now the proof no longer leads to the signed root.
    from infertrail.audit import merkle

    changed["leaf_hash"] = merkle.leaf_hash(changed["record"].encode()).hex()
    section = audit_section(changed, vkey)
    assert section["verified"] is False and "does not lead" in section["reason"]
    assert audit_section(evidence, None)["verified"] is False


def test_request_window_reads_the_uuid7_time() -> None:
    rid = new_request_id()
    window = request_window(rid)
    assert window is not None and window.start < window.end
    assert request_window("not-a-uuid") is None
    assert request_window("123e4567-e89b-42d3-a456-426614174000") is None  # a UUIDv4


def test_lake_lookups_find_sealed_and_unsealed_records(demo: Demo) -> None:
    runtime = demo.services.runtime
    assert runtime.compliance is not None and runtime.audit is not None
    engine = runtime.compliance.engine
    first = demo.answers[0]
    window = request_window(first["request_id"])
    assert window is not None
    found = find_inference(engine, "request_id", first["request_id"], window)
    assert found is not None and found.seq == first["audit_seq"]
    by_trace = find_inference(engine, "trace_id", first["trace_id"], window)
    assert by_trace is not None and by_trace.seq == first["audit_seq"]
    assert find_inference(engine, "request_id", new_request_id(), window) is None
    located = locate_seq(engine, first["audit_seq"])
    assert located is not None and located.request_id == first["request_id"]
    with pytest.raises(LookupError):
        locate_seq(engine, 10**9)
    # Seal what is committed: the same lookups now read the Parquet files.
    assert runtime.audit.sealer is not None
    assert runtime.audit.sealer.seal() or engine.files.snapshot(window)[1]
    found = find_inference(engine, "request_id", first["request_id"], window)
    assert found is not None and found.seq == first["audit_seq"]
    wide = TimeWindow(window.start, window.end)
    same = [a for a in demo.answers if a["label"] == first["label"]]
    rows = similar_requests(
        engine,
        model_name="sentiment",
        decision=first["label"],
        confidence=None,
        window=wide,
        exclude_seq=first["audit_seq"],
    )
    assert sorted(r.seq for r in rows) == sorted(a["audit_seq"] for a in same[1:])
    assert all(r.subject is None or r.subject.startswith("p-") for r in rows)
    with pytest.raises(ValueError, match="radius"):
        similar_requests(
            engine, model_name="sentiment", decision=None, confidence=0.5, window=wide,
            exclude_seq=0, radius=0,
        )  # fmt: skip
