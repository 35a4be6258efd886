"""Issue 15, item 1: an erased subject leaves no raw id, and no raw input, anywhere on disk.

The demo service (``build_services``/``create_app``, as ``infertrail serve`` runs it) serves
every route with a distinctive raw subject id and distinctive raw inputs: sentiment, credit (the
applicant id; credit attributes are categorical codes), digits, outcomes, every compliance
route with the role it needs (subject_id queries, export, proof, checkpoint, denials, erasure)
and rejected requests; then ``infertrail audit query`` and ``infertrail privacy`` commands that
take a subject. The subject is erased, the service shut down (every exporter flushed), and every
byte under the data directory is searched: files as stored (the audit WAL, SQLite databases with
their ``-wal``/``-shm`` files and free pages, telemetry, logs) and decoded (Parquet columns,
zip, zlib, gzip, bz2, xz), in several encodings of each secret, file names included. Nothing
may be found.

The search is tested first (:func:`test_the_search_finds_what_is_planted`): every encoding and
container it claims to read is planted with a secret and must be found, and a container it
cannot read fails the search instead of passing it.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import logging
import lzma
import random
import secrets
import sqlite3
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import uvicorn
from click.testing import CliRunner

from infertrail import monitor as monitor_module
from infertrail.audit.compaction import Compactor
from infertrail.audit.keys import open_signer
from infertrail.cli import main
from infertrail.config import Settings
from infertrail.models.credit import as_application, load_dataset
from infertrail.models.digits import N_PIXELS
from infertrail.server.app import DemoService, build_services, create_app
from infertrail.telemetry.setup import INFERENCE_LOG_FILE
from tests.integration.conftest import LOOPBACK, free_port

# -- the search ---------------------------------------------------------------------------------


class CannotSearch(AssertionError):
    """A file holds a container the search cannot read: it must fail, not pass it unread."""


@dataclass(frozen=True)
class Hit:
    """A secret found: in which file, in which layer (as stored or decoded), how encoded."""

    path: str
    layer: str
    secret: str
    encoding: str

    def __str__(self) -> str:
        return f"{self.path} [{self.layer}]: {self.secret} ({self.encoding})"


@dataclass
class Searched:
    """What the search read: the hits, and how much of each kind it opened."""

    hits: list[Hit] = field(default_factory=list)
    files: int = 0
    bytes: int = 0
    layers: dict[str, int] = field(default_factory=dict)


def encodings(secret: str) -> dict[str, bytes]:
    """The byte strings ``secret`` would be written as: plain, recased, percent- and
    form-encoded, UTF-16, hex, and base64 (standard and URL-safe) at each of the 3 alignments
    (only the characters that do not depend on the bytes around it)."""
    raw = secret.encode()
    found = {
        "utf-8": raw,
        "lowercase": secret.lower().encode(),
        "uppercase": secret.upper().encode(),
        "percent-encoded": quote(secret, safe="").encode(),
        "form-encoded": quote_plus(secret).encode(),
        "utf-16-le": secret.encode("utf-16-le"),
        "utf-16-be": secret.encode("utf-16-be"),
        "hex": raw.hex().encode(),
        "HEX": raw.hex().upper().encode(),
    }
    for k in range(3):
        for name, encode in (("base64", base64.b64encode), ("base64url", base64.urlsafe_b64encode)):
            text = encode(b"\0" * k + raw)
            found[f"{name}@{k}"] = text[-(-8 * k // 6) : 8 * (k + len(raw)) // 6]
    return found


def _values(value: Any) -> Iterator[bytes]:
    """Every scalar of a decoded Parquet value (structs, lists, maps), as bytes."""
    if value is None:
        return
    if isinstance(value, bytes):
        yield value
    elif isinstance(value, str):
        yield value.encode()
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _values(k)
            yield from _values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _values(v)
    else:
        yield str(value).encode()


def _looks_zlib(data: bytes) -> bool:
    return len(data) > 2 and data[0] & 0x0F == 8 and ((data[0] << 8) | data[1]) % 31 == 0


def layers(name: str, data: bytes) -> Iterator[tuple[str, bytes]]:
    """``data`` as stored, then every layer decoded from it (recursively)."""
    yield "as stored", data
    decoded: list[tuple[str, bytes]] = []
    if data[:4] == b"PAR1" and data[-4:] == b"PAR1":
        table = pq.ParquetFile(io.BytesIO(data)).read()
        for column in table.column_names:
            values = b"\n".join(_values(table.column(column).to_pylist()))
            decoded.append((f"parquet column {column}", values))
    elif data[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            decoded += [(f"zip member {m}", archive.read(m)) for m in archive.namelist()]
    elif data[:2] == b"\x1f\x8b":
        decoded.append(("gzip", gzip.decompress(data)))
    elif data[:3] == b"BZh":
        decoded.append(("bzip2", bz2.decompress(data)))
    elif data[:6] == b"\xfd7zXZ\x00":
        decoded.append(("xz", lzma.decompress(data)))
    elif data[:4] in (b"\x28\xb5\x2f\xfd", b"\x04\x22\x4d\x18"):
        raise CannotSearch(f"{name}: a zstd or lz4 frame, which this search does not decode")
    elif _looks_zlib(data):
        stream = zlib.decompressobj()
        try:
            out = stream.decompress(data)
        except zlib.error:
            out = None  # text that merely starts like a zlib header
        if out is not None:
            if not stream.eof:
                raise CannotSearch(f"{name}: a truncated zlib stream")
            decoded.append(("zlib", out))
    for layer, inner in decoded:
        for sub, blob in layers(f"{name} > {layer}", inner):
            yield (layer if sub == "as stored" else f"{layer} > {sub}"), blob


def search(root: Path, secrets_: Mapping[str, str]) -> Searched:
    """Every file under ``root`` (and its name), in every layer, for every encoding of every
    secret."""
    needles = [(label, enc, b) for label, s in secrets_.items() for enc, b in encodings(s).items()]
    result = Searched()
    paths = sorted(root.rglob("*"))
    assert paths, f"nothing under {root}"
    for path in paths:
        rel = path.relative_to(root).as_posix()
        for label, enc, needle in needles:
            if needle in rel.encode():
                result.hits.append(Hit(rel, "file name", label, enc))
        if not path.is_file():
            continue
        data = path.read_bytes()
        result.files += 1
        result.bytes += len(data)
        for layer, blob in layers(rel, data):
            kind = "stored" if layer == "as stored" else layer.split(" > ")[-1].split(" ")[0]
            result.layers[kind] = result.layers.get(kind, 0) + 1
            for label, enc, needle in needles:
                if needle in blob:
                    result.hits.append(Hit(rel, layer, label, enc))
    return result


def test_the_search_finds_what_is_planted(tmp_path: Path) -> None:
    secret = f"planted-{secrets.token_hex(8)}"
    other = f"never-written-{secrets.token_hex(8)}"
    sentence = f"{secrets.token_hex(8)} a sentence with spaces"
    raw = secret.encode()
    root = tmp_path / "tree"
    root.mkdir()
    (root / "plain.log").write_bytes(b"x " + raw + b" y\n")
    (root / "query.jsonl").write_text(json.dumps({"q": f"subject_id={quote(sentence)}"}))
    for k in range(3):  # base64 at every alignment, inside JSON
        blob = base64.b64encode(b"pre"[:k] + raw + b"post").decode()
        (root / f"b64-{k}.json").write_text(json.dumps({"bytes": blob}))
    (root / "utf16.txt").write_bytes(secret.encode("utf-16-le"))
    (root / "hex.txt").write_text(raw.hex())
    (root / "records.gz").write_bytes(gzip.compress(raw))
    (root / "model.joblib").write_bytes(zlib.compress(b"pickle" + raw))
    (root / "old.bz2").write_bytes(bz2.compress(raw))
    # Compressors keep short inputs, and a few literals among matches, verbatim: hide the
    # secret among 8,000 non-repeating letters, which are Huffman-coded, so only decoding finds it.
    rng = random.Random(0)
    filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(4000)).encode()
    body = filler + raw + filler
    (root / "old.xz").write_bytes(lzma.compress(body))
    with zipfile.ZipFile(root / "profile.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", b"\x93NUMPY" + body)
    table = pa.table(
        {
            "n": [1, 2],
            "text": ["a", body.decode()],
            "nested": [{"k": [body.decode()]}, None],
            "blob": [body, b""],
        }
    )
    # (Statistics would keep a min and max uncompressed in the footer.)
    pq.write_table(table, root / "lake.parquet", compression="zstd", write_statistics=False)
    # SQLite: a deleted row stays in a free page unless secure_delete overwrites it.
    db = sqlite3.connect(root / "kept.db")
    db.execute("PRAGMA secure_delete=OFF")
    db.execute("CREATE TABLE t (v TEXT)")
    db.execute("INSERT INTO t VALUES (?)", (secret * 50,))
    db.commit()
    db.execute("DELETE FROM t")
    db.commit()
    db.close()
    utf16 = sqlite3.connect(root / "utf16.db")
    utf16.execute("PRAGMA encoding='UTF-16le'")
    utf16.execute("CREATE TABLE t (v TEXT)")
    utf16.execute("INSERT INTO t VALUES (?)", (secret,))
    utf16.commit()
    utf16.close()
    (root / f"partition={secret}").mkdir()
    (root / "clean.txt").write_text("nothing to see")

    found = search(root, {"id": secret, "text": sentence, "absent": other})
    where = {(h.path, h.layer.split(" > ")[0]) for h in found.hits}
    expected = {
        ("plain.log", "as stored"),
        ("query.jsonl", "as stored"),
        ("b64-0.json", "as stored"),
        ("b64-1.json", "as stored"),
        ("b64-2.json", "as stored"),
        ("utf16.txt", "as stored"),
        ("hex.txt", "as stored"),
        ("records.gz", "gzip"),
        ("model.joblib", "zlib"),
        ("old.bz2", "bzip2"),
        ("old.xz", "xz"),
        ("profile.npz", "zip member x.npy"),
        ("lake.parquet", "parquet column text"),
        ("lake.parquet", "parquet column nested"),
        ("lake.parquet", "parquet column blob"),
        ("kept.db", "as stored"),
        ("utf16.db", "as stored"),
        (f"partition={secret}", "file name"),
    }
    assert where == expected
    assert not [h for h in found.hits if h.secret == "absent"]
    assert not [h for h in found.hits if h.path == "clean.txt"]
    # Compressed, the values are not in the bytes as stored: decoding is what found them.
    assert not {("lake.parquet", "as stored"), ("old.xz", "as stored")} & where
    # and a container the search cannot read fails it
    (root / "opaque.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 16)
    with pytest.raises(CannotSearch, match=r"opaque\.zst"):
        search(root, {"id": secret})


# -- the service ---------------------------------------------------------------------------------

TOKEN = secrets.token_hex(8)
# The subject erased through the API; the one erased by the CLI; a raw input of no subject.
SUBJECT = f"erasure-probe-{TOKEN}"
CLI_SUBJECT = f"cli-erasure-probe-{secrets.token_hex(8)}"
TEXT_TOKEN = secrets.token_hex(8)
TEXT = f"{TEXT_TOKEN} the zebra-striped teapot sang softly about quarterly erasure receipts"
SECRETS = {"subject": SUBJECT, "cli subject": CLI_SUBJECT, "text": TEXT, "text token": TEXT_TOKEN}
JUSTIFICATION = "DSAR 2026-301: all decisions about the requesting applicant"


def _months_ago(n: int, day: int = 1, hour: int = 0) -> datetime:
    now = datetime.now(UTC)
    year, month = divmod(now.year * 12 + now.month - 1 - n, 12)
    return datetime(year, month + 1, day, hour, tzinfo=UTC)


# Two of the subject's decisions fall in months closed whatever today's date (so compacted),
# the others now; the window covers them all.
CLOSED_MONTHS = (_months_ago(3, 15, 10), _months_ago(2, 20, 9))
WINDOW = {
    "from": _months_ago(3).date().isoformat(),
    "to": (datetime.now(UTC) + timedelta(days=1)).date().isoformat(),
}
ALLOWED = "model"  # telemetry_query_allowlist: kept on the outcomes route, not on /v1/audit


class _Clock:
    """Stands in for the ``time`` module inside infertrail.monitor: a settable wall clock."""

    def __init__(self) -> None:
        self.now_ns = time.time_ns()

    def at(self, when: datetime | None) -> None:
        self.now_ns = time.time_ns() if when is None else int(when.timestamp() * 1e9)

    def time_ns(self) -> int:
        return self.now_ns

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@dataclass
class Service:
    """The running service, its keys by role, and the Monitor's clock."""

    base: str
    services: DemoService
    keys: dict[str, str]
    clock: _Clock
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def settings(self) -> Settings:
        return self.services.settings

    def client(self, role: str | None = None) -> httpx.Client:
        headers = {} if role is None else {"Authorization": f"Bearer {self.keys[role]}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=60)

    def stop(self) -> None:
        """Stop serving, then the runtime: final checkpoint, every exporter flushed and closed."""
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "the server did not stop"
        self.services.close()


@pytest.fixture
def service(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    """The demo service as ``infertrail serve`` runs it (its access log on, uvicorn's off),
    raw payloads kept, ``model`` allow-listed."""
    settings = settings.model_copy(
        update={"raw_payloads_enabled": True, "telemetry_query_allowlist": [ALLOWED]}
    )
    services = build_services(settings)
    assert services.runtime.compliance is not None
    users = services.runtime.compliance.users
    keys = {role: users.add(f"{role}-1", role)[1] for role in
            ("engineer", "auditor", "compliance", "admin")}  # fmt: skip
    port = free_port()
    app = create_app(services, access_log=True)
    config = uvicorn.Config(app, host=LOOPBACK, port=port, log_level="info", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "service did not start"
        time.sleep(0.02)
    clock = _Clock()
    monkeypatch.setattr(monitor_module, "time", clock)
    running = Service(f"http://{LOOPBACK}:{port}", services, keys, clock, server, thread)
    try:
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        services.close()  # idempotent


def cli(settings: Settings, *args: str, key: str | None = None) -> Any:
    """Run ``infertrail --data-dir ... ARGS`` with the service's settings; returns the result."""
    env = {"INFERTRAIL_RAW_PAYLOADS_ENABLED": "true"}
    if key is not None:
        env["INFERTRAIL_API_KEY"] = key
    return CliRunner().invoke(main, ["--data-dir", str(settings.data_dir), *args], env=env)


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.url.path}: {response.text}"
    return response.json() if "json" in response.headers.get("content-type", "") else response


def drive(svc: Service) -> dict[str, Any]:
    """Every route of the demo service, with the secrets where a client would put them.

    Returns what the checks afterwards need: the request id of the subject's first query (its
    ``access_query`` record's) and the ``/metrics`` text scraped before the stop.
    """
    rows = load_dataset().X
    seen: dict[str, Any] = {}
    with (
        svc.client() as anon,
        svc.client("compliance") as compliance,
        svc.client("auditor") as auditor,
        svc.client("engineer") as engineer,
    ):
        # -- decisions: the subject's in closed months (compacted) and now; the CLI subject's
        credit_ids = []
        for i, (subject, when) in enumerate(
            [(SUBJECT, CLOSED_MONTHS[0]), (SUBJECT, CLOSED_MONTHS[1]), (SUBJECT, None),
             (CLI_SUBJECT, None)]
        ):  # fmt: skip
            svc.clock.at(when)
            body = {"applicant_id": subject, **as_application(rows[i])}
            credit_ids.append(ok(anon.post("/v1/credit/score", json=body))["request_id"])
        svc.clock.at(None)
        ok(anon.post("/v1/sentiment", json={"text": TEXT}))
        ok(anon.post("/v1/digits", json={"pixels": [float(i % 17) for i in range(N_PIXELS)]}))
        ok(anon.post("/v1/outcomes", json=[{"request_id": rid, "outcome": 1} for rid in
                                           credit_ids]))  # fmt: skip
        times = {k: f"{v}T00:00:00Z" for k, v in WINDOW.items()}  # RFC 3339 times here
        ok(anon.get("/v1/outcomes/performance", params={ALLOWED: "credit", **times}))
        # -- rejected before inference: the answers must not echo the secrets either
        bad_id = {"applicant_id": f"{SUBJECT}!", **as_application(rows[0])}
        problem = ok(anon.post("/v1/credit/score", json=bad_id), 422)["detail"][0]
        assert SUBJECT not in problem["message"]
        ok(anon.post("/v1/sentiment", json={"text": "   "}), 422)
        truncated = f'{{"text": "{TEXT}"'.encode()  # not JSON: the parser's error must not echo
        json_header = {"Content-Type": "application/json"}
        ok(anon.post("/v1/sentiment", content=truncated, headers=json_header), 400)
        # Into the lake: hour files, then the subject-sorted copies of the closed months
        # (which the service's sealer makes in its background round).
        svc.services.runtime.audit.sealer.seal()  # type: ignore[union-attr]
        settings = svc.settings
        compactor = Compactor(settings.lake_url, open_signer(settings), settings.audit_origin)
        assert len(compactor.compact()) == len(CLOSED_MONTHS)

        # -- the compliance API, every route, with the role each needs and without
        by_subject = {"subject_id": SUBJECT, "justification": JUSTIFICATION, **WINDOW}
        query = compliance.get("/v1/audit/records", params={**by_subject, ALLOWED: "credit"})
        page = ok(query)
        assert page["subject"]["status"] == "resolved" and page["count"] == 3
        seen["access_request_id"] = query.headers["x-request-id"]  # its access_query record's
        seen["pseudonym"] = page["filters"]["pseudonym"]
        ok(anon.get("/v1/audit/records", params=by_subject), 401)
        ok(engineer.get("/v1/audit/records", params=by_subject), 403)
        ok(auditor.get("/v1/audit/records", params=by_subject), 403)  # audited refusal
        ok(compliance.get("/v1/audit/records", params={"subject_id": SUBJECT}), 422)
        ok(auditor.get("/v1/audit/records", params={"pseudonym": seen["pseudonym"], **WINDOW}))
        for fmt in ("json", "csv"):
            export = compliance.get("/v1/audit/export", params={**by_subject, "format": fmt})
            assert export.status_code == 200 and SUBJECT not in export.text, export.text
        proof = ok(auditor.get(f"/v1/audit/proof/{page['rows'][0]['seq']}"))
        assert proof["seq"] == page["rows"][0]["seq"]
        ok(auditor.get("/v1/audit/checkpoint"))
        ok(anon.get("/v1/audit/checkpoint"), 401)

        # -- the CLI's query goes through the API while the server holds the log
        queried = cli(svc.settings, "audit", "query", "--subject", SUBJECT,
                      "--from", WINDOW["from"], "--to", WINDOW["to"],
                      "--justification", JUSTIFICATION, "--format", "json", "--url", svc.base,
                      key=svc.keys["compliance"])  # fmt: skip
        assert queried.exit_code == 0, queried.output

        # -- erasure, and what follows it
        erasure = {"subject_id": SUBJECT, "justification": "GDPR Art. 17 request 2026-302"}
        ok(anon.post("/v1/audit/erasure", json=erasure), 401)
        ok(auditor.post("/v1/audit/erasure", json=erasure), 403)
        receipt = ok(compliance.post("/v1/audit/erasure", json=erasure))
        assert receipt["mapping_rows"] == 1 and receipt["data_keys"] >= 1
        assert ok(compliance.post("/v1/audit/erasure", json=erasure)) == receipt
        after = ok(compliance.get("/v1/audit/records", params=by_subject))
        assert after["subject"]["status"] == "erased" and after["rows"] == []
        refused = anon.post("/v1/credit/score", json={"applicant_id": SUBJECT,
                                                      **as_application(rows[5])})  # fmt: skip
        assert refused.status_code == 409 and SUBJECT not in refused.text
        metrics = ok(anon.get("/metrics")).text
        assert "infertrail_audit_access_denied_total" in metrics
        seen["metrics"] = metrics
    return seen


def after_shutdown(settings: Settings, keys: Mapping[str, str]) -> None:
    """The ``infertrail privacy`` and local ``audit`` commands that take a subject."""
    status = cli(settings, "privacy", "status", "--subject", SUBJECT, "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["pseudonym"] is None
    assert json.loads(status.output)["erasure"]["receipt_seq"] is not None
    held = cli(settings, "privacy", "status", "--subject", CLI_SUBJECT, "--json")
    assert json.loads(held.output)["pseudonym"], held.output
    erased = cli(settings, "privacy", "erase", "--subject", CLI_SUBJECT, "--actor", "dpo-1",
                 "--reason", "GDPR Art. 17 request 2026-303", "--json")  # fmt: skip
    assert erased.exit_code == 0, erased.output
    assert json.loads(erased.output)["data_keys"] >= 1
    again = cli(settings, "privacy", "erase", "--subject", SUBJECT, "--actor", "dpo-1",
                "--reason", "GDPR Art. 17 request 2026-302")  # fmt: skip
    assert again.exit_code == 0, again.output  # the first receipt, nothing appended
    for subject in (SUBJECT, CLI_SUBJECT):
        local = cli(settings, "audit", "query", "--subject", subject, "--from", WINDOW["from"],
                    "--to", WINDOW["to"], "--justification", JUSTIFICATION, "--actor",
                    "compliance-1", "--format", "json")  # fmt: skip
        assert local.exit_code == 0, local.output
        assert json.loads(local.output)["subject"]["status"] == "erased"
    purged = cli(settings, "privacy", "purge")
    assert purged.exit_code == 0, purged.output


@pytest.mark.slow
def test_erasure_leaves_no_trace(
    service: Service, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="infertrail")
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    # uvicorn's access log is off, as `infertrail serve` runs it (it would log query strings);
    # pytest attaches its capture handler to every non-propagating logger, which turns it back
    # on (uvicorn logs access when the logger has a handler), so keep it off here.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "disabled", True)
    seen = drive(service)
    service.stop()
    after_shutdown(service.settings, service.keys)
    data = service.settings.data_dir

    found = search(data, SECRETS)
    assert not found.hits, "the erased subject or a raw input is still on disk:\n" + "\n".join(
        map(str, found.hits)
    )
    # ... and not finding them means something: the search read every kind of store, and the
    # telemetry of the subject's queries is there (the tester's attack went through its lines).
    assert found.layers.get("parquet", 0) >= 1, found.layers
    assert found.layers.get("zlib", 0) >= 1 and found.layers.get("zip", 0) >= 1, found.layers
    stores = {p.name for p in data.rglob("*") if p.is_file()}
    assert {"subjects.db", "payloads.db", "users.db", "outcomes.db"} <= stores, stores
    assert any(p.suffix == ".seg" for p in data.rglob("*")), "no WAL segment was searched"
    telemetry = service.settings.telemetry_dir
    for name in ("traces.jsonl", "metrics.jsonl", "logs.jsonl", INFERENCE_LOG_FILE):
        assert (telemetry / name).stat().st_size > 0, f"{name} is empty: nothing was flushed"
    traces = (telemetry / "traces.jsonl").read_text()
    assert "/v1/audit/records" in traces and "subject_id=REDACTED" in traces
    assert f"{ALLOWED}=REDACTED" in traces  # the allow-list is off on the audit routes ...
    assert f"{ALLOWED}=credit&from=REDACTED" in traces  # ... and on elsewhere
    assert str(seen["access_request_id"]) in traces  # the request id of the subject's query

    # Nor in the service's own log lines, nor on /metrics.
    for label, secret in SECRETS.items():
        for record in caplog.records:
            assert secret not in record.getMessage(), f"{label} in log: {record.getMessage()}"
        assert secret not in seen["metrics"], f"{label} on /metrics"
