"""``infertrail users`` and ``infertrail audit query|export``: the CLI twins of the compliance API.

Who the CLI acts as: ``--actor NAME`` names an active user from ``infertrail users``; that user's
role applies and every query is appended to the audit log as an ``access_query`` record with
``channel: cli`` and the OS user. The CLI cannot authenticate a local operator: whoever can run
it can read the data directory (and the lake) anyway, so the record is accountability, not a
barrier. When no server holds the log, the CLI opens it itself (local mode). While a server
holds it, only the server can append the access record, so the CLI sends the query to the
server's API (``--url``, default ``http://<host>:<port>``) with the key in ``INFERTRAIL_API_KEY``;
the key's owner is then the actor. Exit codes: 0 done, 1 refused (role, key, integrity),
2 usage (bad parameters or settings, unknown actor).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import getpass
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import click
import httpx

from infertrail.audit.checkpoint import NoteVerifier
from infertrail.audit.keys import KeyFileError, load_signer
from infertrail.audit.ledger import AuditLog, LogCorruptedError, LogLockedError
from infertrail.commandline import UsageProblem, settings_of
from infertrail.compliance.access import (
    ROLES,
    AccessError,
    UserExistsError,
    UserStore,
    users_db_path,
)
from infertrail.compliance.engine import LakeIntegrityError, LakeQuery
from infertrail.compliance.export import (
    CSV_COLUMNS,
    FORMATS,
    csv_chunks,
    json_chunks,
    row_csv_values,
)
from infertrail.compliance.filters import DEFAULT_PAGE_SIZE, QueryError
from infertrail.compliance.queries import Caller, NotFoundError, QueryService, RecordsQuery
from infertrail.config import Settings
from infertrail.events import new_request_id
from infertrail.privacy.errors import PrivacyError
from infertrail.privacy.stores import PrivacyService
from infertrail.progress import print_table, progress

__all__ = ["API_KEY_ENV", "export", "query", "users"]

API_KEY_ENV = "INFERTRAIL_API_KEY"
_TABLE_COLUMNS = ("seq", "ts", "event_type", "subject", "model_name", "model_version", "decision")


class Refused(click.ClickException):
    """Refused or failed for a reason retyping will not fix (role, key, integrity): exit 1."""

    exit_code = 1


def _paths(ctx: click.Context, settings: Settings) -> tuple[Path, str, Path]:
    """(log dir, lake URL, signing key file): the ``audit`` group's options, else settings."""
    paths = ctx.find_object(object)
    return (
        getattr(paths, "log_dir", None) or settings.audit_log_dir,
        getattr(paths, "lake_url", None) or settings.lake_url,
        getattr(paths, "key_file", None) or settings.signing_key_file,
    )


def _store(settings: Settings) -> UserStore:
    return UserStore(users_db_path(settings.data_dir))


# ---- users ----------------------------------------------------------------------------------


@click.group()
def users() -> None:
    """Users of the compliance API: API keys (stored hashed) and roles."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), required=True, help="Permission level.")
@click.pass_context
def users_add(ctx: click.Context, name: str, role: str) -> None:
    """Create user NAME and print its API key (shown only now; store it safely)."""
    store = _store(settings_of(ctx))
    try:
        user, key = store.add(name, role)
    except (ValueError, UserExistsError) as exc:
        raise UsageProblem(str(exc)) from exc
    finally:
        store.close()
    click.echo(
        f"user {user.name} ({user.role}) created; its API key follows, shown only once:", err=True
    )
    click.echo(key)


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """List users: name, role, key id (a hash prefix, not the key), created, revoked."""
    store = _store(settings_of(ctx))
    try:
        found = store.list()
    finally:
        store.close()
    if as_json:
        rows = [{"name": u.name, "role": u.role, "key_id": u.key_id, "created": u.created,
                 "revoked": u.revoked} for u in found]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    for u in found:
        state = f"revoked {u.revoked}" if u.revoked else "active"
        click.echo(f"{u.name:<24} {u.role:<11} key {u.key_id}  created {u.created}  {state}")


@users.command("revoke")
@click.argument("name")
@click.pass_context
def users_revoke(ctx: click.Context, name: str) -> None:
    """Revoke NAME's API key at once (the name is never reused)."""
    store = _store(settings_of(ctx))
    try:
        user = store.revoke(name)
    except LookupError as exc:
        raise UsageProblem(str(exc)) from exc
    finally:
        store.close()
    click.echo(f"user {user.name} revoked at {user.revoked}")


# ---- audit query / export -------------------------------------------------------------------


def _filter_options(f: Any) -> Any:
    options = [
        click.option("--from", "start", required=True, help="Window start (date or RFC 3339)."),
        click.option("--to", "end", required=True, help="Window end, exclusive."),
        click.option("--subject", "subject_id", help="A subject's real id (compliance role)."),
        click.option("--pseudonym", help="A subject's pseudonym, as in the records."),
        click.option("--model", "model_name", help="Model name."),
        click.option("--model-version", help="Model version."),
        click.option("--decision", help="Decision, e.g. approve, decline, refer."),
        click.option("--event-type", help="Record event type, e.g. inference, access_query."),
        click.option("--justification", help="Why (required with --subject; it is logged)."),
        click.option("--actor", help="Your user name (local mode; see `infertrail users`)."),
        click.option(
            "--url",
            help="Query a running server's API instead (default when the log "
            f"is held by one; key in ${API_KEY_ENV}).",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.command("query")
@_filter_options
@click.option("--format", "fmt", type=click.Choice(["table", *FORMATS]), default="table")
@click.option("--limit", type=click.IntRange(1, 1000), default=DEFAULT_PAGE_SIZE)
@click.option("--cursor", help="next_cursor of the previous page (same filters).")
@click.pass_context
def query(ctx: click.Context, /, fmt: str, limit: int, cursor: str | None, **opts: Any) -> None:
    """One page of audit records with proofs (twin of GET /v1/audit/records)."""
    actor, url = opts.pop("actor"), opts.pop("url")
    q = RecordsQuery(**opts, cursor=cursor, limit=limit)
    with _session(ctx, actor, url) as session:
        if isinstance(session, _Local):
            page = _run(lambda: session.service.query(session.caller, q).to_dict())
        else:
            page = _remote_json(session, "/v1/audit/records", _params(q))
    _print_page(page, fmt)


@click.command("export")
@_filter_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="json")
@click.option("--proofs/--no-proofs", default=True, help="Attach an inclusion proof per row.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Default: stdout.")
@click.pass_context
def export(ctx: click.Context, /, fmt: str, proofs: bool, out: Path | None, **opts: Any) -> None:
    """Every matching record, streamed as JSON or CSV (twin of GET /v1/audit/export)."""
    actor, url = opts.pop("actor"), opts.pop("url")
    q = RecordsQuery(**opts)
    with _session(ctx, actor, url) as session, _output(out) as sink:
        if isinstance(session, _Local):
            result = _run(lambda: session.service.export(session.caller, q, proofs=proofs))
            note, count = result.checkpoint.note.decode(), result.count
            with progress(count, "exporting", "records") as bar:
                encode = csv_chunks if fmt == "csv" else json_chunks
                chunks = encode(result, bar.advance)
                _run(lambda: _write_all(chunks, sink))
        else:
            params = {**_params(q), "format": fmt, "proofs": str(proofs).lower()}
            with session.stream("GET", "/v1/audit/export", params=params) as response:
                if response.status_code != 200:
                    response.read()
                    _raise_remote(response)
                with progress(None, "exporting", "bytes") as bar:
                    for chunk in response.iter_bytes():
                        sink.write(chunk)
                        bar.advance(len(chunk))
                note = base64.b64decode(response.headers["X-Audit-Checkpoint"]).decode()
                count = int(response.headers["X-Audit-Count"])
    click.echo(f"{count} records exported; proven against checkpoint:\n{note}", err=True)


def _write_all(chunks: Iterator[bytes], sink: IO[bytes]) -> None:
    for chunk in chunks:
        sink.write(chunk)


@contextlib.contextmanager
def _output(out: Path | None) -> Iterator[IO[bytes]]:
    if out is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with out.open("wb") as f:
        yield f


def _caller(ctx: click.Context, actor: str | None) -> Caller:
    settings = settings_of(ctx)
    if not actor:
        raise UsageProblem("--actor NAME is required: your user name from `infertrail users list`")
    store = _store(settings)
    try:
        user = store.get(actor)
    finally:
        store.close()
    if user is None or not user.active:
        state = "does not exist" if user is None else f"was revoked at {user.revoked}"
        raise UsageProblem(f"user {actor!r} {state}; see `infertrail users list`")
    return Caller(user, "cli", request_id=new_request_id(), detail={"os_user": getpass.getuser()})


@dataclass(frozen=True)
class _Local:
    """Local mode: this process holds the log, so it runs the service itself."""

    service: QueryService
    caller: Caller


@contextlib.contextmanager
def _session(
    ctx: click.Context, actor: str | None, url: str | None
) -> Iterator[_Local | httpx.Client]:
    """Local mode (the log opened here) or an HTTP client of the server that holds the log."""
    settings = settings_of(ctx)
    if url is not None:
        with _http_client(url) as client:
            yield client
        return
    log_dir, lake_url, key_file = _paths(ctx, settings)
    if not (log_dir / "log.json").exists():
        raise UsageProblem(f"no audit log at {log_dir} (log.json is missing)")
    try:
        signer = load_signer(key_file)
        origin = json.loads((log_dir / "log.json").read_bytes())["origin"]
        log = AuditLog.open(log_dir, signer=signer, origin=origin)
    except LogLockedError:
        default = f"http://{settings.host}:{settings.port}"
        click.echo(f"the audit log is held by a running server: querying {default}", err=True)
        with _http_client(default) as client:
            yield client
        return
    except (KeyFileError, LogCorruptedError, ValueError, KeyError) as exc:
        raise UsageProblem(f"cannot open the audit log {log_dir}: {exc}") from exc
    with contextlib.ExitStack() as stack:
        stack.callback(log.close)
        caller = _caller(ctx, actor)  # only local mode: through the API the key names the actor
        privacy = PrivacyService.open(settings, log)
        stack.callback(privacy.close)
        engine = LakeQuery(log, lake_url, NoteVerifier.from_key(signer.verifier_key))
        stack.callback(engine.close)
        yield _Local(QueryService(engine, privacy.recorder, privacy), caller)


def _http_client(url: str) -> httpx.Client:
    key = os.environ.get(API_KEY_ENV)
    if not key:
        raise UsageProblem(
            f"querying the server at {url} needs your API key in ${API_KEY_ENV} "
            "(never on the command line, where other users can see it)"
        )
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=300)


def _run(action: Any) -> Any:
    """Run a service call, mapping its errors to exit codes."""
    try:
        return action()
    except QueryError as exc:
        raise UsageProblem(f"--{exc.field.replace('_', '-')}: {exc.message}") from exc
    except (AccessError, PrivacyError, LakeIntegrityError) as exc:
        raise Refused(str(exc)) from exc
    except NotFoundError as exc:
        raise Refused(str(exc)) from exc


def _params(q: RecordsQuery) -> dict[str, str]:
    pairs = {
        "from": q.start, "to": q.end, "subject_id": q.subject_id, "pseudonym": q.pseudonym,
        "model_name": q.model_name, "model_version": q.model_version, "decision": q.decision,
        "event_type": q.event_type, "justification": q.justification, "cursor": q.cursor,
        "limit": str(q.limit),
    }  # fmt: skip
    return {k: v for k, v in pairs.items() if v is not None}


def _remote_json(client: httpx.Client, path: str, params: dict[str, str]) -> dict[str, Any]:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise Refused(f"cannot reach the server at {client.base_url}: {exc}") from exc
    if response.status_code != 200:
        _raise_remote(response)
    data: dict[str, Any] = response.json()
    return data


def _raise_remote(response: httpx.Response) -> None:
    try:
        body = response.json()
        detail = body.get("detail")
    except ValueError:
        detail = response.text[:200]
    if isinstance(detail, list):
        detail = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in detail)
    message = f"server answered {response.status_code}: {detail}"
    if response.status_code == 422:
        raise UsageProblem(message)
    raise Refused(message)


def _print_page(page: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps(page, indent=2))
        return
    rows = page["rows"]
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        writer.writerows(row_csv_values(r) for r in rows)
        click.echo(buf.getvalue(), nl=False)
    else:
        print_table([[r[c] for c in _TABLE_COLUMNS] for r in rows], _TABLE_COLUMNS)
    subject = page.get("subject")
    if subject and subject["status"] != "resolved":
        click.echo(f"subject: {subject['status']}", err=True)
    if subject and subject.get("erasure"):
        e = subject["erasure"]
        click.echo(
            f"erased at {e['erased_at']} by {e['by']['id']} (seq {e['receipt_seq']})", err=True
        )
    click.echo(
        f"{page['count']} rows; proofs against tree size {page['tree_size']} "
        f"(--format json shows them); access record seq {page['access_seq']}",
        err=True,
    )
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}", err=True)
