"""``infertrail retention``: what expires when, and shredding what is due.

``status`` only reads (it works while a server runs). ``apply`` appends its record to the
audit log, so it opens the log itself and refuses while a server holds it: the server's own
retention task applies it then (``retention_enforce``, every ``retention_interval_s``).
Exit codes: 0 done, 1 refused (log held, keyring or store unreadable), 2 usage (bad settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog, LogCorruptedError, LogLockedError
from infertrail.commandline import UsageProblem, settings_of
from infertrail.config import Settings
from infertrail.keyring import KeyringError, PeriodKey
from infertrail.privacy.crypto import KEK_PURPOSE, load_key_wrapper
from infertrail.privacy.errors import PrivacyError
from infertrail.privacy.keys import open_keyring, periodic_purposes
from infertrail.privacy.raw_payloads import PayloadStore
from infertrail.privacy.stores import PAYLOADS_DB, PrivacyService
from infertrail.retention.plan import KeyState
from infertrail.retention.service import (
    RetentionService,
    RetentionStatus,
    ShredReport,
    retention_service,
)

__all__ = ["retention"]


class Refused(click.ClickException):
    """Refused or failed for a reason retyping cannot fix: exit 1."""

    exit_code = 1


@contextmanager
def _refusals() -> Iterator[None]:
    """Map the library's errors to exit codes: refusals 1, bad values 2."""
    try:
        yield
    except (PrivacyError, KeyringError, LogCorruptedError, RuntimeError) as exc:
        raise Refused(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise UsageProblem(str(exc)) from exc


@contextmanager
def _read_only(settings: Settings) -> Iterator[RetentionService]:
    """The service over the keyring and payload store, without an audit log (status only)."""
    keyring = open_keyring(settings)
    payloads = None
    path = settings.privacy_dir / PAYLOADS_DB
    if path.exists():
        kek = load_key_wrapper(settings.raw_payloads_kek_source, keyring)
        # Nothing is stored through it: no subject is live for this view.
        payloads = PayloadStore(path, kek, lambda _pseudonym: False)
    try:
        days = periodic_purposes(settings)[KEK_PURPOSE]
        yield RetentionService(keyring, payloads, None, payload_days=days)
    finally:
        if payloads is not None:
            payloads.close()


@contextmanager
def _writable(settings: Settings) -> Iterator[RetentionService]:
    """The service recording to the audit log, opened by this process."""
    signer = open_signer(settings)
    try:
        log = AuditLog.open(settings.audit_log_dir, signer=signer, origin=settings.audit_origin)
    except LogLockedError as exc:
        raise Refused(
            f"{exc}. A running infertrail server holds the audit log: its retention task "
            "applies retention while it runs (retention_enforce)"
        ) from exc
    try:
        keyring = open_keyring(settings)
        privacy = PrivacyService.open(settings, log, keyring=keyring)
        try:
            yield retention_service(settings, keyring, privacy)
        finally:
            privacy.close()
    finally:
        log.close()


_STATE_TEXT: dict[KeyState, str] = {
    "live": "live",
    "due": "DUE: apply destroys it",
    "destroyed": "destroyed",
    "unrecorded": "destroyed, record pending: apply records it",
}


def _key_line(key: PeriodKey, state: KeyState) -> str:
    line = f"  {key.key_id:<22} kept until {key.keep_until.isoformat()}  {_STATE_TEXT[state]}"
    if key.destroyed is not None:
        line += f" at {key.destroyed}"
    if key.receipt_seq is not None:
        line += f" (record seq {key.receipt_seq})"
    return line


def status_text(status: RetentionStatus) -> str:
    """The human-readable ``retention status``."""
    lines = [f"retention as of {status.as_of.isoformat()} (UTC)", "period keys:"]
    lines += [_key_line(k, s) for k, s in status.keys] or ["  (none yet)"]
    if status.payload_periods:
        lines.append("raw-payload data keys by period:")
        for p in status.payload_periods:
            until = "purged, never shredded" if p.keep_until is None else p.keep_until
            due = "  DUE" if p.due else ""
            name = p.period or "(before key periods)"
            lines.append(
                f"  {name:<22} kept until {until}  {p.data_keys} data key(s), "
                f"{p.payloads} payload(s){due}"
            )
    if status.unperiodic_keys:
        lines.append(
            "keys outside key periods (retention never destroys them): "
            + ", ".join(status.unperiodic_keys)
        )
    would = status.would_shred
    lines.append(
        f"apply would destroy {len(status.due)} key(s) and delete {would.data_keys} data "
        f"key(s) and {would.payloads} payload(s)"
        + (f"; and record {len(status.unrecorded)} already destroyed" if status.unrecorded else "")
    )
    if status.next_due is not None:
        lines.append(f"next key due on {status.next_due.isoformat()}")
    return "\n".join(lines)


def report_text(report: ShredReport) -> str:
    """The human-readable ``retention apply``."""
    if report.receipt_seq is None:
        return f"retention as of {report.as_of.isoformat()}: nothing due"
    keys = [k.key_id for k in report.destroyed]
    resumed = [k.key_id for k in report.resumed]
    return (
        f"retention as of {report.as_of.isoformat()}: destroyed {len(keys)} key(s) {keys}"
        + (f", recorded {resumed} destroyed by an interrupted run" if resumed else "")
        + f"; deleted {report.shredded.data_keys} data key(s) and "
        f"{report.shredded.payloads} payload(s); recorded at seq {report.receipt_seq}"
    )


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


@click.group()
def retention() -> None:
    """Retention: what expires when; crypto-shredding of expired months' keys."""


@retention.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Which keys are live, until when, and what apply would shred today."""
    settings = settings_of(ctx)
    with _refusals(), _read_only(settings) as service:
        result = service.status()
    _emit(result.to_dict(), as_json, status_text(result))


@retention.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def apply(ctx: click.Context, as_json: bool) -> None:
    """Shred what is due today and record it in the audit log (idempotent)."""
    settings = settings_of(ctx)
    with _refusals(), _writable(settings) as service:
        report = service.apply()
    _emit(report.to_dict(), as_json, report_text(report))
