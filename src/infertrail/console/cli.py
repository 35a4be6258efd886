"""``infertrail report drift|performance|slo|compliance``: a report as one HTML (or PDF) file.

Reports read the data directory offline (:mod:`infertrail.console.reports` says from where).
The compliance report opens the audit log itself, as ``infertrail audit query`` does in local
mode, and acts as ``--actor``: its export is recorded in the log as an ``access_query`` record
before anything is read, so it fails while a running service holds the log (stop it, or query
through the service's API). Exit codes: 0 written, 1 refused (role, integrity, Chromium
failed), 2 usage (bad options, unknown model or actor, missing data).
"""

from __future__ import annotations

import contextlib
import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from infertrail.commandline import UsageProblem, settings_of
from infertrail.config import Settings
from infertrail.console.reports import (
    Period,
    ReportError,
    compliance_report,
    drift_report,
    performance_report,
    print_pdf,
    render_html,
    slo_report,
)
from infertrail.cost.cli import parse_time

__all__ = ["report"]


class Refused(click.ClickException):
    """Refused or failed for a reason retyping will not fix: exit 1."""

    exit_code = 1


def _period(start: str, end: str) -> Period:
    try:
        return Period(parse_time(start, "--from"), parse_time(end, "--to"))
    except ReportError as exc:
        raise UsageProblem(str(exc)) from None


def _common(f: Any) -> Any:
    options = [
        click.option("--from", "start", required=True, help="Period start (date or RFC 3339)."),
        click.option("--to", "end", required=True, help="Period end, exclusive."),
        click.option(
            "--out",
            required=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="The report file to write.",
        ),
        click.option("--model", help="Only this model."),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(["html", "pdf"]),
            default=None,
            help="Default: from --out's suffix (.pdf), else html.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _write(data: dict[str, Any], out: Path, fmt: str | None) -> None:
    """Render ``data`` to ``out`` as HTML or (headless Chromium) PDF."""
    fmt = fmt or ("pdf" if out.suffix.lower() == ".pdf" else "html")
    try:
        if fmt == "pdf":
            print_pdf(render_html(data, for_print=True), out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(render_html(data), encoding="utf-8")
    except ReportError as exc:
        raise Refused(str(exc)) from None
    except OSError as exc:
        raise UsageProblem(f"cannot write {out}: {exc}") from None
    click.echo(f"{data['title']} written to {out} ({fmt}, {out.stat().st_size:,} bytes)", err=True)


def _build(action: Any) -> dict[str, Any]:
    try:
        data: dict[str, Any] = action()
    except ReportError as exc:
        raise UsageProblem(str(exc)) from None
    return data


@click.group("report")
def report() -> None:
    """Reports as self-contained HTML or PDF files (docs/console.md, "Reports")."""


@report.command("drift")
@_common
@click.pass_context
def drift_cmd(
    ctx: click.Context, start: str, end: str, out: Path, model: str | None, fmt: str | None
) -> None:
    """Prediction drift per window against each model's reference profile."""
    period = _period(start, end)
    settings = settings_of(ctx)
    _write(_build(lambda: drift_report(settings, period, model)), out, fmt)


@report.command("performance")
@_common
@click.pass_context
def performance_cmd(
    ctx: click.Context, start: str, end: str, out: Path, model: str | None, fmt: str | None
) -> None:
    """Realized performance from the outcomes joined to predictions."""
    period = _period(start, end)
    settings = settings_of(ctx)
    _write(_build(lambda: performance_report(settings, period, model)), out, fmt)


@report.command("slo")
@_common
@click.pass_context
def slo_cmd(
    ctx: click.Context, start: str, end: str, out: Path, model: str | None, fmt: str | None
) -> None:
    """Error budgets and burn rates of the SLOs across the period."""
    period = _period(start, end)
    settings = settings_of(ctx)
    _write(_build(lambda: slo_report(settings, period, model)), out, fmt)


@report.command("compliance")
@_common
@click.option("--subject", "subject_id", help="A subject's real id: adds the Art. 15 report.")
@click.option("--justification", help="Why (required with --subject; it is logged).")
@click.option("--actor", required=True, help="Your user name (see `infertrail users`).")
@click.option(
    "--max-records",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="Refuse rather than truncate beyond this many records.",
)
@click.pass_context
def compliance_cmd(
    ctx: click.Context,
    start: str,
    end: str,
    out: Path,
    model: str | None,
    fmt: str | None,
    subject_id: str | None,
    justification: str | None,
    actor: str,
    max_records: int,
) -> None:
    """The evidence pack: decisions with inclusion proofs and the signed checkpoint, the
    subject access report, Reg B notices and the EU AI Act log extract."""
    period = _period(start, end)
    settings = settings_of(ctx)
    with _local_service(settings, actor) as (service, caller, key):
        data = _build_compliance(
            lambda: compliance_report(
                service,
                caller,
                settings,
                period,
                verifier_key=key,
                model=model,
                subject_id=subject_id,
                justification=justification,
                max_records=max_records,
            )
        )
    _write(data, out, fmt)


def _build_compliance(action: Any) -> dict[str, Any]:
    """Map the query service's errors to exit codes (as ``infertrail audit query`` does)."""
    from infertrail.compliance.access import AccessError
    from infertrail.compliance.engine import LakeIntegrityError
    from infertrail.compliance.filters import QueryError
    from infertrail.privacy.errors import PrivacyError

    try:
        return _build(action)
    except QueryError as exc:
        name = {"from": "from", "to": "to", "subject_id": "subject"}.get(exc.field, exc.field)
        raise UsageProblem(f"--{name.replace('_', '-')}: {exc.message}") from None
    except (AccessError, PrivacyError, LakeIntegrityError) as exc:
        raise Refused(str(exc)) from None


@contextlib.contextmanager
def _local_service(settings: Settings, actor: str) -> Iterator[tuple[Any, Any, str]]:
    """(query service, caller, verifier key) over the data directory's log, opened here."""
    from infertrail.audit.checkpoint import NoteVerifier
    from infertrail.audit.keys import KeyFileError, load_signer
    from infertrail.audit.ledger import AuditLog, LogCorruptedError, LogLockedError
    from infertrail.compliance.access import UserStore, users_db_path
    from infertrail.compliance.engine import LakeQuery
    from infertrail.compliance.queries import Caller, QueryService
    from infertrail.events import new_request_id
    from infertrail.privacy.stores import PrivacyService

    store = UserStore(users_db_path(settings.data_dir))
    try:
        user = store.get(actor)
    finally:
        store.close()
    if user is None or not user.active:
        state = "does not exist" if user is None else f"was revoked at {user.revoked}"
        raise UsageProblem(f"--actor {actor!r} {state}; see `infertrail users list`")
    log_dir = settings.audit_log_dir
    if not (log_dir / "log.json").exists():
        raise UsageProblem(f"no audit log at {log_dir} (log.json is missing)")
    try:
        signer = load_signer(settings.signing_key_file)
        origin = json.loads((log_dir / "log.json").read_bytes())["origin"]
        log = AuditLog.open(log_dir, signer=signer, origin=origin)
    except LogLockedError:
        raise Refused(
            f"the audit log {log_dir} is held by a running service: the report records its "
            "access in the log, so stop the service first (or use its compliance API)"
        ) from None
    except (KeyFileError, LogCorruptedError, ValueError, KeyError) as exc:
        raise UsageProblem(f"cannot open the audit log {log_dir}: {exc}") from None
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        privacy = PrivacyService.open(settings, log)
        stack.callback(privacy.close)
        engine = LakeQuery(log, settings.lake_url, NoteVerifier.from_key(signer.verifier_key))
        stack.callback(engine.close)
        caller = Caller(
            user, "cli", request_id=new_request_id(), detail={"os_user": getpass.getuser()}
        )
        yield QueryService(engine, privacy.recorder, privacy), caller, signer.verifier_key
