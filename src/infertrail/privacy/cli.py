"""``infertrail privacy``: erase a subject, show its erasure status, purge, break-glass read.

A thin skin over :class:`~infertrail.privacy.stores.PrivacyService`. Commands that write to the
audit log open it themselves, so they refuse while a server holds it (use the API then).
The role is the operator's declaration: whoever can run this command can read the keyring, so
the CLI records the role, and the HTTP API is where roles are authenticated.
Exit codes: 0 done, 1 refused (role, justification, unknown subject, log held, tampering),
2 usage (bad options or settings).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

import click
from pydantic import ValidationError

from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog, LogCorruptedError, LogLockedError
from infertrail.audit.record import Actor
from infertrail.commandline import UsageProblem, settings_of
from infertrail.config import Settings
from infertrail.keyring import Keyring, KeyringError
from infertrail.privacy.errors import PrivacyError
from infertrail.privacy.pseudonyms import PseudonymTable, Tombstone
from infertrail.privacy.stores import PAYLOADS_DB, SUBJECTS_DB, PrivacyService

__all__ = ["privacy"]


class Refused(click.ClickException):
    """The action was refused or failed for a reason the user cannot fix by retyping: exit 1."""

    exit_code = 1


def _actor(actor_id: str, role: str) -> Actor:
    try:
        return Actor(id=actor_id, role=role)
    except ValidationError as exc:
        raise UsageProblem(f"bad --actor/--role {actor_id!r}/{role!r}: {exc}") from exc


@contextmanager
def _refusals() -> Iterator[None]:
    """Map the library's errors to exit codes: refusals 1, bad values 2."""
    try:
        yield
    except (PrivacyError, KeyringError, LogCorruptedError) as exc:
        raise Refused(str(exc)) from exc
    except (ValueError, TypeError) as exc:
        raise UsageProblem(str(exc)) from exc


@contextmanager
def _writable(settings: Settings) -> Iterator[PrivacyService]:
    """The privacy services recording to the audit log, opened by this process."""
    with _refusals():
        signer = open_signer(settings)
        try:
            log = AuditLog.open(settings.audit_log_dir, signer=signer, origin=settings.audit_origin)
        except LogLockedError as exc:
            raise Refused(
                f"{exc}. A running infertrail server holds the audit log: use its API while "
                "it runs (these actions must be recorded in that log)"
            ) from exc
        try:
            service = PrivacyService.open(settings, log)
            try:
                yield service
            finally:
                service.close()
        finally:
            log.close()


def _emit(data: dict[str, Any], as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True) if as_json else text)


def _tombstone_text(tomb: Tombstone) -> str:
    receipt = "PENDING (run erase again)" if tomb.receipt_seq is None else tomb.receipt_seq
    return (
        f"erased at {tomb.erased_at} by {tomb.actor.id} (role {tomb.actor.role}); "
        f"reason: {tomb.reason}; receipt seq {receipt}; deleted {tomb.mapping_rows} mapping "
        f"row(s), {tomb.data_keys} data key(s), {tomb.payloads} payload(s)"
    )


@click.group()
def privacy() -> None:
    """Pseudonyms, erasure, raw-payload purges and break-glass reads."""


@privacy.command()
@click.option("--subject", required=True, help="The subject id (never stored raw).")
@click.option("--actor", "actor_id", required=True, help="Pseudonymous id of who erases.")
@click.option("--role", default="compliance", show_default=True, help="compliance or admin.")
@click.option("--reason", required=True, help="Why (goes into the permanent log: no names).")
@click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON.")
@click.pass_context
def erase(
    ctx: click.Context, subject: str, actor_id: str, role: str, reason: str, as_json: bool
) -> None:
    """Erase a subject: delete its pseudonym mapping and data key, log an erasure receipt."""
    settings = settings_of(ctx)
    actor = _actor(actor_id, role)
    if not (settings.privacy_dir / SUBJECTS_DB).exists():
        raise Refused(
            f"no pseudonym table at {settings.privacy_dir / SUBJECTS_DB}: no subject was ever "
            "pseudonymized here, nothing to erase"
        )
    with _writable(settings) as service:
        receipt = service.erase(subject, actor, reason)
    data = asdict(receipt) | {"actor": receipt.actor.model_dump()}
    text = (
        f"erased: receipt seq {receipt.receipt_seq} at {receipt.erased_at} by "
        f"{receipt.actor.id} (role {receipt.actor.role}); deleted {receipt.mapping_rows} mapping "
        f"row(s), {receipt.data_keys} data key(s), {receipt.payloads} payload(s)"
    )
    _emit(data, as_json, text)


@privacy.command()
@click.option("--subject", required=True, help="The subject id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, subject: str, as_json: bool) -> None:
    """Whether a pseudonym is held for a subject, and when and by whom it was erased."""
    settings = settings_of(ctx)
    path = settings.privacy_dir / SUBJECTS_DB
    pseudonym: str | None = None
    tomb: Tombstone | None = None
    if path.exists():
        with _refusals():
            table = PseudonymTable(path, Keyring(settings.keyring_file))
            try:
                pseudonym = table.lookup(subject)
                tomb = table.tombstone(subject)
            finally:
                table.close()
    data = {
        "pseudonym": pseudonym,
        "erasure": None if tomb is None else asdict(tomb) | {"actor": tomb.actor.model_dump()},
    }
    lines = [f"pseudonym held: {pseudonym}" if pseudonym else "no pseudonym held"]
    lines.append(_tombstone_text(tomb) if tomb else "never erased")
    _emit(data, as_json, "\n".join(lines))


@privacy.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def purge(ctx: click.Context, as_json: bool) -> None:
    """Delete raw payloads past their retention now (the server also does it periodically)."""
    settings = settings_of(ctx)
    if not (settings.privacy_dir / PAYLOADS_DB).exists():
        _emit({"payloads": 0}, as_json, "no raw payload store: nothing to purge")
        return
    with _writable(settings) as service:
        assert service.payloads is not None  # opened because the file exists
        report = service.payloads.purge()
    text = (
        f"purged {report.payloads} payload(s) and {report.data_keys} data key(s) stored before "
        f"{report.cutoff}"
        + ("" if report.receipt_seq is None else f"; recorded at seq {report.receipt_seq}")
    )
    _emit(asdict(report), as_json, text)


@privacy.command("break-glass")
@click.option("--request-id", required=True, help="Request whose raw input to read.")
@click.option("--actor", "actor_id", required=True, help="Pseudonymous id of who reads.")
@click.option("--role", default="admin", show_default=True, help="Must be admin.")
@click.option("--justification", required=True, help="Why (>= 10 characters; it is logged).")
@click.pass_context
def break_glass(
    ctx: click.Context, request_id: str, actor_id: str, role: str, justification: str
) -> None:
    """Decrypt one request's raw input; the read is recorded in the audit log first."""
    settings = settings_of(ctx)
    actor = _actor(actor_id, role)
    if not (settings.privacy_dir / PAYLOADS_DB).exists():
        raise Refused(f"no raw payload store at {settings.privacy_dir / PAYLOADS_DB}")
    with _writable(settings) as service:
        assert service.payloads is not None  # opened because the file exists
        payload = service.payloads.read(request_id, actor, justification)
    click.echo(
        f"break-glass read of request {request_id} recorded at seq {payload.break_glass_seq} "
        f"(subject {payload.pseudonym}, stored {payload.stored_at})",
        err=True,
    )
    click.echo(payload.plaintext.decode())
