"""``infertrail report``: the compliance evidence pack of real credit decisions (its proofs
checked by ``infertrail audit check-proof``), Reg B notices, the subject access report, the
drift report from the prediction index, a PDF through headless Chromium, and bad arguments."""

from __future__ import annotations

import html
import json
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from infertrail.cli import main
from infertrail.compliance.access import UserStore, users_db_path
from infertrail.config import Settings
from infertrail.console.reports import Period, ReportError, find_chromium
from infertrail.models import credit
from infertrail.models.reason_codes import reason_table
from infertrail.server.app import build_services, create_app
from infertrail.server.credit import CREDIT_SCORE_PATH

N_APPLICATIONS = 60
_PROOF = re.compile(r'<pre data-proof-seq="(\d+)">(.*?)</pre>', re.S)


def _run(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args])


def _window() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return today.isoformat(), (today + timedelta(days=1)).isoformat()


@pytest.fixture
def served(settings: Settings) -> Settings:
    """The demo service in-process, scoring N_APPLICATIONS real applicants, then stopped."""
    data = credit.load_dataset()
    services = build_services(settings)
    app = create_app(services, close_on_shutdown=True)
    outcomes = ["request_id,outcome"]
    with TestClient(app) as client:
        for i in range(N_APPLICATIONS):
            body = {**credit.as_application(data.X[i]), "applicant_id": f"applicant-{i}"}
            r = client.post(CREDIT_SCORE_PATH, json=body)
            assert r.status_code == 200, r.text
            outcomes.append(f"{r.json()['request_id']},{int(data.y[i])}")
    (settings.data_dir.parent / "outcomes.csv").write_text("\n".join(outcomes) + "\n")
    store = UserStore(users_db_path(settings.data_dir))
    try:
        store.add("ana", "auditor")
        store.add("cleo", "compliance")
        store.add("eng", "engineer")
    finally:
        store.close()
    return settings


def _proofs(page: str) -> dict[int, str]:
    return {int(seq): html.unescape(text) for seq, text in _PROOF.findall(page)}


def test_compliance_pack_of_real_decisions_verifies_offline(
    served: Settings, tmp_path: Path
) -> None:
    start, end = _window()
    out = tmp_path / "pack.html"
    r = _run(served, "report", "compliance", "--from", start, "--to", end, "--out", str(out),
             "--model", "credit", "--actor", "ana")  # fmt: skip
    assert r.exit_code == 0, r.output
    page = out.read_text()
    # Self-contained: no external resource of any kind.
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<link" not in page and "<script" not in page
    proofs = _proofs(page)
    assert len(proofs) == N_APPLICATIONS
    key = re.search(r"Verifier key.*?<pre>(.*?)</pre>", page, re.S)
    assert key is not None
    key_text = html.unescape(key.group(1)).strip()
    # Every embedded proof passes check-proof; a tampered one fails.
    for seq, text in list(proofs.items())[:5]:
        f = tmp_path / f"proof-{seq}.json"
        f.write_text(text)
        ok = _run(served, "audit", "check-proof", str(f), "--key", key_text)
        assert ok.exit_code == 0, ok.output
    doc = json.loads(next(iter(proofs.values())))
    assert doc["format"] == "infertrail-proof/1"
    doc["record"] = doc["record"].replace('"credit"', '"credlt"')
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(doc))
    assert _run(served, "audit", "check-proof", str(bad), "--key", key_text).exit_code == 1
    # Reg B: one notice per decline, naming its reason codes with the table's texts.
    records = [json.loads(json.loads(t)["record"]) for t in proofs.values()]
    declines = [rec for rec in records if rec["decision"] == "decline"]
    assert declines, "the first applicants of the data set include declines"
    assert page.count("Statement of credit denial") == len(declines)
    texts = {rt.code: rt.text for rt in reason_table().values()}
    for rec in declines:
        for code in rec["explanation"]["reason_codes"]:
            assert f"<code>{code}</code>: {html.escape(texts[code])}" in page
    # The report is self-audited: an access_query record by ana, channel cli.
    seq = int(re.search(r"access record seq (\d+)", page).group(1))  # type: ignore[union-attr]
    assert seq >= N_APPLICATIONS
    assert "Not part of this report" in page  # no --subject: no Art. 15 section
    assert "At least 6 months" in page


def test_subject_access_report_needs_compliance_and_justification(
    served: Settings, tmp_path: Path
) -> None:
    start, end = _window()
    out = tmp_path / "subject.html"
    base = ["report", "compliance", "--from", start, "--to", end, "--out", str(out),
            "--subject", "applicant-3"]  # fmt: skip
    refused = _run(served, *base, "--actor", "ana", "--justification", "DSAR ticket 4711")
    assert refused.exit_code == 1 and "resolve_subject" in refused.output, refused.output
    missing = _run(served, *base, "--actor", "cleo")
    assert missing.exit_code == 2 and "--justification" in missing.output
    ok = _run(served, *base, "--actor", "cleo", "--justification", "DSAR ticket 4711")
    assert ok.exit_code == 0, ok.output
    page = out.read_text()
    records = [json.loads(json.loads(t)["record"]) for t in _proofs(page).values()]
    assert [r["event_type"] for r in records].count("inference") == 1
    # ana's refused attempt is on the subject's record: a recipient of the Art. 15 report.
    denied = [r for r in records if r["event_type"] == "access_query"]
    assert [r["actor"]["id"] for r in denied] == ["ana"]
    assert '"outcome":"denied"' in json.dumps(denied[0], separators=(",", ":"))
    assert "<td>ana</td><td>auditor</td><td>cli</td>" in page
    assert "Subject access report (GDPR Art. 15)" in page and "Recipients" in page
    assert "applicant-3" not in page  # the id is never written, only its pseudonym


def test_drift_report_judges_prediction_windows(served: Settings, tmp_path: Path) -> None:
    start, end = _window()
    out = tmp_path / "drift.html"
    r = _run(served, "report", "drift", "--from", start, "--to", end, "--out", str(out),
             "--model", "credit")  # fmt: skip
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert f"{N_APPLICATIONS} predictions in the period" in page
    assert '<svg class="chart"' in page or "<svg" in page
    assert "<title>" in page


def test_performance_report_of_joined_outcomes(served: Settings, tmp_path: Path) -> None:
    csv_file = served.data_dir.parent / "outcomes.csv"
    ingested = _run(served, "outcomes", "ingest", str(csv_file), "--labels")
    assert ingested.exit_code == 0, ingested.output
    start, end = _window()
    out = tmp_path / "perf.html"
    r = _run(served, "report", "performance", "--from", start, "--to", end, "--out", str(out),
             "--model", "credit")  # fmt: skip
    assert r.exit_code == 0, r.output
    page = out.read_text()
    row = re.search(r"<td>credit</td><td>[^<]+</td><td class=\"n\">(\d+)</td>", page)
    assert row is not None and int(row.group(1)) == N_APPLICATIONS, page[:3000]
    assert re.search(r'<td class="n">\d+\.\d%</td>', page)  # accuracy, a real number
    assert "<svg" in page


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-02-01", "--to", "2026-01-01"], "is not before --to"),
        (["--from", "2026-13-01", "--to", "2026-12-01"], "is not a date"),
        (["--from", "2026-01-01T00:00:00", "--to", "2026-02-01"], "has no UTC offset"),
        (["--from", "2026-01-01", "--to", "2026-02-01", "--model", "nope"], "'nope' is unknown"),
    ],
)
def test_bad_arguments_exit_2_with_precise_messages(
    settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    for kind in ("drift", "performance", "slo"):
        r = _run(settings, "report", kind, *args, "--out", str(tmp_path / "r.html"))
        assert r.exit_code == 2, (kind, r.output)
        assert message in r.output, (kind, r.output)
    r = _run(settings, "report", "compliance", *args, "--out", str(tmp_path / "r.html"),
             "--actor", "nobody")  # fmt: skip
    assert r.exit_code == 2


def test_compliance_refuses_unknown_actor_and_engineers(served: Settings, tmp_path: Path) -> None:
    start, end = _window()
    common = ["report", "compliance", "--from", start, "--to", end, "--out", str(tmp_path / "x")]
    r = _run(served, *common, "--actor", "nobody")
    assert r.exit_code == 2 and "'nobody' does not exist" in r.output
    r = _run(served, *common, "--actor", "eng")
    assert r.exit_code == 1 and "read_decisions" in r.output, r.output
    r = _run(served, *common, "--actor", "ana", "--max-records", "5")
    assert r.exit_code == 2 and f"{N_APPLICATIONS} records match" in r.output, r.output


def test_period_and_missing_chromium() -> None:
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ReportError, match="is not before"):
        Period(t, t)
    with pytest.raises(ReportError, match="apt-get install --no-install-recommends chromium"):
        find_chromium(lambda _name: None)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed")
def test_compliance_pack_as_pdf(served: Settings, tmp_path: Path) -> None:
    start, end = _window()
    out = tmp_path / "pack.pdf"
    r = _run(served, "report", "compliance", "--from", start, "--to", end, "--out", str(out),
             "--actor", "ana", "--format", "pdf")  # fmt: skip
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    pages = len(re.findall(rb"/Type\s*/Page[^s]", data))
    assert pages >= 2, pages


def test_slo_report_of_saved_counts(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SLOs judged on the counts a service saved while it served real credit traffic."""
    slos = tmp_path / "slos.yaml"
    slos.write_text(
        "version: infertrail/v1\nservice: demo\nslos:\n"
        "  - name: credit-availability\n    model: credit\n    objective: 99\n"
        "    window: 28d\n    sli: {kind: availability}\n"
        "  - name: credit-latency\n    model: credit\n    objective: 99\n"
        "    window: 28d\n    sli: {kind: latency, threshold_seconds: 5.0}\n"
    )
    settings.slo_file = slos
    data = credit.load_dataset()
    services = build_services(settings)
    app = create_app(services, close_on_shutdown=True)
    with TestClient(app) as client:
        for i in range(20):
            body = {**credit.as_application(data.X[i]), "applicant_id": f"slo-{i}"}
            assert client.post(CREDIT_SCORE_PATH, json=body).status_code == 200
        bad = client.post(CREDIT_SCORE_PATH, json={"applicant_id": "slo-bad"})
        assert bad.status_code == 422  # rejected: one error against availability
    assert settings.slo_counts_path.is_file()  # saved at shutdown
    monkeypatch.setenv("INFERTRAIL_SLO_FILE", str(slos))  # the CLI's settings name the SLOs
    start, end = _window()
    out = tmp_path / "slo.html"
    result = _run(settings, "report", "slo", "--from", start, "--to", end, "--out", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert "credit-availability" in page and "credit-latency" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")
    result = _run(
        settings, "report", "slo", "--from", start, "--to", end, "--model", "digits",
        "--out", str(tmp_path / "none.html"),
    )  # fmt: skip
    assert result.exit_code != 0 and "digits" in result.output
