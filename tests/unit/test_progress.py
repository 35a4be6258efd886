"""Progress bars and tables (infertrail.progress), and the progress callbacks of the long jobs.

A bar is drawn only on a terminal: CliRunner's streams are not one, so every command run
through it must print exactly what it printed before; a rich Console forced to be a terminal
stands in for a person's. The callbacks are checked against the real jobs: they must add up
to what the job reports it did.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from rich.console import Console

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.cli import audit, keys
from infertrail.audit.compaction import Compactor
from infertrail.audit.keys import load_signer
from infertrail.audit.lake import Sealer
from infertrail.audit.ledger import AuditLog
from infertrail.audit.verify import verify_log
from infertrail.compliance.export import csv_chunks, json_chunks
from infertrail.compliance.queries import RecordsQuery
from infertrail.demo.simulate import send_all, send_with_outcomes
from infertrail.progress import NO_PROGRESS_ENV, Bar, print_table, progress, wanted
from tests.unit.audit.test_lake import make_record
from tests.unit.compliance.conftest import build_template, open_world

ORIGIN = "progress.example/log"


class _Tty(io.StringIO):
    """A stream that says it is a terminal (what wanted() asks)."""

    def isatty(self) -> bool:
        return True


def _terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=120, color_system=None), out


# ---- progress ---------------------------------------------------------------------------


def test_not_a_terminal_draws_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress(10, "verifying", "records") as bar:
        bar.advance(4)
        bar.advance(6)
        bar.set_total(12)
    assert not bar.drawn and bar.done == 10
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_bar_count_rate_and_description() -> None:
    console, out = _terminal()
    with progress(1000, "verifying", "records", console=console) as bar:
        assert bar.drawn
        for _ in range(10):
            bar.advance(100)
    text = out.getvalue()
    assert "verifying" in text
    assert "1000/1000" in text
    assert "records/s" in text
    assert bar.done == 1000


def test_unknown_total_still_draws() -> None:
    console, out = _terminal()
    with progress(None, "training demo-llm", console=console) as bar:
        bar.advance()
    assert "training demo-llm" in out.getvalue()


@pytest.mark.parametrize("how", ["disabled", "not a terminal"])
def test_json_or_a_plain_console_draws_nothing(how: str) -> None:
    if how == "disabled":
        console, out = _terminal()
        enabled = False
    else:
        out = io.StringIO()
        console = Console(file=out, force_terminal=False)
        enabled = True
    with progress(5, "sealing", "records", console=console, enabled=enabled) as bar:
        bar.advance(5)
    assert not bar.drawn and out.getvalue() == ""


@pytest.mark.parametrize(
    ("value", "drawn"), [("1", False), ("yes", False), ("", True), ("0", True), ("false", True)]
)
def test_the_environment_switch(monkeypatch: pytest.MonkeyPatch, value: str, drawn: bool) -> None:
    monkeypatch.setenv(NO_PROGRESS_ENV, value)
    assert wanted(_Tty()) is drawn
    assert wanted(_Tty(), enabled=False) is False
    assert wanted(io.StringIO()) is False


def test_stderr_on_a_terminal_is_drawn_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_PROGRESS_ENV, raising=False)
    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    with progress(3, "profiling", "models") as bar:
        bar.advance(3)
    assert bar.drawn


def test_a_bar_is_thread_safe_in_its_count() -> None:
    from concurrent.futures import ThreadPoolExecutor

    console, _ = _terminal()
    with (
        progress(4000, "simulating", "requests", console=console) as bar,
        ThreadPoolExecutor(8) as pool,
    ):
        list(pool.map(lambda _: bar.advance(), range(4000)))
    assert bar.done == 4000


# ---- print_table -------------------------------------------------------------------------


def test_plain_table_is_aligned_with_none_as_dash() -> None:
    out = io.StringIO()
    print_table([[1, "approve", None], [12345, "decline", "p-1"]], ["seq", "decision", "subject"],
                stream=out)  # fmt: skip
    assert out.getvalue().splitlines() == [
        "seq    decision  subject",
        "1      approve   -",
        "12345  decline   p-1",
    ]


def test_plain_table_without_rows_is_the_header() -> None:
    out = io.StringIO()
    print_table([], ["seq", "ts"], stream=out)
    assert out.getvalue() == "seq  ts\n"


def test_a_row_of_the_wrong_width_is_refused() -> None:
    with pytest.raises(ValueError, match=r"a row has 1 cells for 2 columns: \[1\]"):
        print_table([[1]], ["seq", "ts"], stream=io.StringIO())


def test_rich_table_on_a_terminal() -> None:
    console, out = _terminal()
    print_table([[7, "approve"]], ["seq", "decision"], console=console)
    lines = [line.strip() for line in out.getvalue().splitlines() if line.strip()]
    assert lines[0].split() == ["seq", "decision"]
    assert lines[1].split() == ["7", "approve"]


# ---- the jobs' callbacks add up ------------------------------------------------------------


def _counter() -> tuple[list[int], Any]:
    seen: list[int] = []
    return seen, seen.append


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[tuple[Path, Any]]:
    """A closed log of 60 records over three hours, with its signer."""
    from infertrail.audit.keys import generate_signing_key

    key_file = tmp_path / "audit.key"
    generate_signing_key(key_file, ORIGIN)
    signer = load_signer(key_file)
    path = tmp_path / "log"
    with AuditLog.open(path, signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(60):
            log.append(make_record(i, hour=10 + i // 25))
    yield path, signer


def test_seal_and_verify_callbacks_count_every_record(
    log_dir: tuple[Path, Any], tmp_path: Path
) -> None:
    path, signer = log_dir
    lake = str(tmp_path / "lake")
    sealed_calls, on_sealed = _counter()
    with AuditLog.open(path, signer=signer, origin=ORIGIN, fsync=False) as log:
        sealed = Sealer(log, lake, signer, max_rows_per_file=25).seal(on_progress=on_sealed)
        for i in range(60, 70):  # an unsealed tail in the WAL
            log.append(make_record(i, hour=13))
    assert sum(sealed_calls) == sum(f.manifest.count for f in sealed) == 60
    assert sealed_calls == [25, 25, 10]
    verified_calls, on_verified = _counter()
    verifier = NoteVerifier.from_key(signer.verifier_key)
    report = verify_log(path, lake, verifier, on_progress=on_verified)
    assert report.ok and report.records == 70
    assert sum(verified_calls) == 70 and len(verified_calls) >= 2
    # worker processes: the same counts, reported in order by the parent
    again, on_again = _counter()
    assert verify_log(path, lake, verifier, workers=2, on_progress=on_again).ok
    assert again == verified_calls


def test_nothing_to_seal_reports_nothing(log_dir: tuple[Path, Any], tmp_path: Path) -> None:
    path, signer = log_dir
    calls, on_progress = _counter()
    with AuditLog.open(path, signer=signer, origin=ORIGIN, fsync=False) as log:
        sealer = Sealer(log, str(tmp_path / "lake"), signer)
        sealer.seal()
        assert sealer.seal(on_progress=on_progress) == [] and calls == []


def test_compact_callback_counts_each_month(tmp_path: Path) -> None:
    from infertrail.audit.keys import generate_signing_key

    generate_signing_key(tmp_path / "k", ORIGIN)
    signer = load_signer(tmp_path / "k")
    times = ["2025-03-02T10:00:00Z", "2025-04-17T08:30:00Z", "2099-01-01T00:00:00Z"]
    lake = str(tmp_path / "lake")
    with AuditLog.open(tmp_path / "log", signer=signer, origin=ORIGIN, fsync=False) as log:
        for i in range(30):
            log.append(make_record(i, ts=times[i // 10], subject=f"p-{i % 4}"))
        Sealer(log, lake, signer).seal()
    compactor = Compactor(lake, signer, ORIGIN)
    total = sum(m.count for sources in compactor.pending().values() for m in sources)
    calls, on_progress = _counter()
    done = compactor.compact(on_progress=on_progress)
    assert calls == [10, 10] and sum(calls) == total == sum(c.manifest.count for c in done)


def test_export_callbacks_count_the_rows(tmp_path: Path) -> None:
    world = open_world(build_template(tmp_path / "template"), tmp_path / "world")
    try:
        q = RecordsQuery("2026-07-01", "2026-07-04")
        for encode in (json_chunks, csv_chunks):
            export = world.service.export(world.caller("auditor"), q)
            calls, on_progress = _counter()
            b"".join(encode(export, on_progress))
            assert export.count > 0 and sum(calls) == export.count
    finally:
        world.close()


def _service(statuses: Iterable[int]) -> httpx.Client:
    """A real WSGI app in process, answering the given statuses in turn."""
    codes = iter(statuses)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        code = next(codes)
        body = json.dumps({"request_id": f"r-{code}"}).encode()
        start_response(f"{code} X", [("content-type", "application/json")])
        return [body]

    return httpx.Client(base_url="http://svc", transport=httpx.WSGITransport(app=app))


def test_send_all_reports_each_request_answered_or_not() -> None:
    calls, on_progress = _counter()
    with _service([200] * 7 + [500] * 3) as client:
        result = send_all(
            client, "/v1/x", [[{"i": i} for i in range(5)]] * 2, on_progress=on_progress
        )
    assert result.sent == 10 and result.failed == 3
    assert calls == [1] * 10


def test_send_with_outcomes_reports_each_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transport errors count too: a service that is not there answers nothing."""
    calls, on_progress = _counter()
    result, _ = send_with_outcomes(
        "http://127.0.0.1:9",  # discard port: refused
        "/v1/credit/score",
        [({"a": 1}, "approve"), ({"a": 2}, "decline")],
        ["approve", "decline"],
        timeout_s=2.0,
        on_progress=on_progress,
    )
    assert result.sent == 2 and result.ok == 0
    assert calls == [1, 1]


# ---- commands: unchanged output when not a terminal --------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INFERTRAIL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("INFERTRAIL_AUDIT_ORIGIN", ORIGIN)
    runner = CliRunner()
    assert runner.invoke(keys, ["init"]).exit_code == 0
    signer = load_signer(tmp_path / "data/keys/audit.key")
    with AuditLog.open(tmp_path / "data/audit/log", signer=signer, origin=ORIGIN) as log:
        for i in range(30):
            log.append(make_record(i, hour=10 + i // 20))
    return tmp_path / "data"


def test_seal_json_and_verify_print_no_progress(data_dir: Path) -> None:
    runner = CliRunner()
    sealed = runner.invoke(audit, ["seal", "--json"], catch_exceptions=False)
    assert sealed.exit_code == 0, sealed.output
    assert sealed.stderr == ""
    doc = json.loads(sealed.stdout)
    assert doc["records"] == 30
    assert [(f["first_seq"], f["last_seq"]) for f in doc["files"]] == [(0, 19), (20, 29)]
    for f in doc["files"]:
        assert (data_dir / "audit/lake" / f["file"]).is_file()
    again = runner.invoke(audit, ["seal", "--json"], catch_exceptions=False)
    assert json.loads(again.stdout) == {"files": [], "records": 0}
    verified = runner.invoke(audit, ["verify", "--no-state"], catch_exceptions=False)
    assert verified.exit_code == 0, verified.output
    assert verified.stderr == ""
    assert verified.stdout.startswith(f"OK: {ORIGIN}: 30 records verified")


def test_compact_on_a_terminal_draws_on_stderr_only_without_json(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forced to a terminal, the bar goes to stderr; --json keeps even that quiet."""
    runner = CliRunner()
    assert runner.invoke(audit, ["seal"]).exit_code == 0
    drawn: list[Bar] = []

    @contextmanager
    def on_terminal(*args: Any, **kwargs: Any) -> Iterator[Bar]:
        console, _ = _terminal()
        with progress(*args, console=console, **kwargs) as bar:
            drawn.append(bar)
            yield bar

    monkeypatch.setattr("infertrail.audit.cli.progress", on_terminal)
    result = runner.invoke(audit, ["compact", "--json"], catch_exceptions=False)
    assert result.exit_code == 0 and json.loads(result.stdout)["records"] == 30
    assert [b.drawn for b in drawn] == [False]
    result = runner.invoke(audit, ["verify", "--no-state"], catch_exceptions=False)
    assert result.exit_code == 0
    assert drawn[-1].drawn and drawn[-1].done == 30


def test_the_demo_says_each_phase_with_the_seconds_since_it_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from infertrail.demo.run import _Steps

    step = _Steps()
    step("training sentiment")
    step("starting the service")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "training sentiment",
        "starting the service",
    ]
    seconds = [float(line[1:].split(" s]")[0]) for line in lines]
    assert 0.0 <= seconds[0] <= seconds[1] < 5.0
