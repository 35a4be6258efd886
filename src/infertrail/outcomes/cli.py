"""``infertrail outcomes ingest FILE`` and ``infertrail outcomes report``.

A click group for the main command to add (``main.add_command(outcomes)``). ``ingest`` reads
JSON lines (one outcome object per line) or CSV (header ``request_id,outcome[,ts][,kind]``),
validates the WHOLE file first (every problem, with its line number; nothing is written if
there is one), then stores it through the same :class:`OutcomeService` as the HTTP endpoint,
in batches of ``outcome_batch_max``, auditing into the local log, or posts it to a running
service with ``--url`` (whose process holds the audit log). A conflict stops the run; the
batches before it are stored, and since repeats are no-ops the fixed file can simply be
ingested again.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from infertrail import __version__
from infertrail.audit.keys import open_signer
from infertrail.audit.ledger import AuditLog, LogLockedError
from infertrail.audit.record import retention_policy
from infertrail.commandline import settings_of
from infertrail.config import Settings
from infertrail.cost.cli import parse_time
from infertrail.outcomes.api import OUTCOMES_PATH
from infertrail.outcomes.estimated import Estimators
from infertrail.outcomes.ingest import (
    AuditUnavailableError,
    IngestResult,
    OutcomeAudit,
    OutcomeService,
)
from infertrail.outcomes.join import OutcomeSpec, performance_report, spec_from_settings, unix_ns
from infertrail.outcomes.render import report_as_dict, report_as_table
from infertrail.outcomes.schema import (
    Outcome,
    OutcomeProblem,
    OutcomeValidationError,
    parse_outcomes,
)
from infertrail.outcomes.store import OutcomeConflictError, OutcomeStore, outcomes_db_path

__all__ = ["outcomes", "read_outcome_file"]

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_CSV_FIELDS = {"request_id", "outcome", "ts", "kind"}
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class FileProblems(click.ClickException):
    """A file that does not validate: every problem with its line, nothing written."""

    exit_code = 2


def _csv_value(text: str, labels_only: bool) -> Any:
    if labels_only:
        return text
    if _INT.match(text):
        return int(text)
    if _FLOAT.match(text):
        return float(text)
    return text


def read_outcome_file(
    path: Path, fmt: str, *, labels_only: bool = False
) -> tuple[list[Any], list[int]]:
    """The outcome objects in ``path`` and the line number of each; FileProblems on mistakes.

    ``fmt`` is ``jsonl``, ``csv`` or ``auto`` (by suffix: .csv is CSV, anything else JSON
    lines). In CSV, an outcome cell that reads as an integer or a decimal number becomes one,
    unless ``labels_only`` (every outcome is then a label string).
    """
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.FileError(str(path), str(exc)) from None
    items: list[Any] = []
    lines: list[int] = []
    problems: list[str] = []
    if fmt == "jsonl":
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                items.append(orjson.loads(line))
                lines.append(n)
            except orjson.JSONDecodeError as exc:
                problems.append(f"line {n}: not valid JSON: {exc}")
    else:
        reader = csv.DictReader(text.splitlines())
        header = set(reader.fieldnames or ())
        if not {"request_id", "outcome"} <= header or header - _CSV_FIELDS:
            raise FileProblems(
                f"{path}: CSV header must be request_id,outcome with optional ts,kind; got "
                f"{','.join(reader.fieldnames or ()) or 'nothing'}"
            )
        for row in reader:
            item: dict[str, Any] = {k: v for k, v in row.items() if v not in (None, "")}
            if "outcome" in item:
                item["outcome"] = _csv_value(item["outcome"], labels_only)
            items.append(item)
            lines.append(reader.line_num)
    if problems:
        raise FileProblems(_listing(path, problems))
    if not items:
        raise FileProblems(f"{path}: no outcomes in the file")
    return items, lines


def _listing(path: Path, problems: list[str]) -> str:
    shown = "\n".join(f"  {p}" for p in problems[:50])
    more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
    return f"{path}: {len(problems)} problem(s), nothing was ingested:\n{shown}{more}"


def _at_line(problem: OutcomeProblem, lines: list[int]) -> str:
    where = "file" if problem.index is None else f"line {lines[problem.index]}"
    return f"{where}: {problem.field}: {problem.message}"


@click.group("outcomes")
def outcomes() -> None:
    """Delayed outcomes joined back to predictions (docs/outcomes.md)."""


@outcomes.command("ingest")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="auto: .csv is CSV, anything else JSON lines.",
)
@click.option("--labels", "labels_only", is_flag=True, help="CSV: every outcome is a label.")
@click.option("--url", help="Post to a running service (base URL) instead of storing locally.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help="Outcomes per transaction or request (default: settings.outcome_batch_max).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def ingest_cmd(
    ctx: click.Context,
    file: Path,
    fmt: str,
    labels_only: bool,
    url: str | None,
    batch_size: int | None,
    as_json: bool,
) -> None:
    """Ingest outcomes from FILE (JSON lines or CSV); the whole file is validated first."""
    settings = settings_of(ctx)
    items, lines = read_outcome_file(file, fmt, labels_only=labels_only)
    try:
        parsed = parse_outcomes(items, batch_max=len(items))
    except OutcomeValidationError as exc:
        raise FileProblems(_listing(file, [_at_line(p, lines) for p in exc.problems])) from None
    batch = batch_size or settings.outcome_batch_max
    total = IngestResult(received=0, accepted=0, duplicates=0)
    with _http_ingestor(url) if url else _local_ingestor(settings) as ingest:
        for i in range(0, len(parsed), batch):
            try:
                result = ingest(items[i : i + batch], parsed[i : i + batch])
            except (OutcomeConflictError, AuditUnavailableError, RemoteError) as exc:
                _report(total, as_json)
                raise click.ClickException(
                    f"{exc}\nfrom line {lines[i]} on, nothing was ingested; fix the cause and "
                    "ingest the file again (outcomes already stored are skipped as repeats)"
                ) from None
            total.received += result.received
            total.accepted += result.accepted
            total.duplicates += result.duplicates
            total.unknown += result.unknown
            total.audit_seqs += result.audit_seqs
    _report(total, as_json)


def _report(result: IngestResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
        return
    click.echo(
        f"received {result.received}, accepted {result.accepted}, duplicates "
        f"{result.duplicates}, unknown request ids {len(result.unknown)}"
    )
    for rid in result.unknown[:20]:
        click.echo(f"  unknown: {rid}")
    if len(result.unknown) > 20:
        click.echo(f"  ... and {len(result.unknown) - 20} more (--json lists them all)")


Ingest = Callable[[list[Any], list[Outcome]], IngestResult]


class RemoteError(Exception):
    """The service refused a batch (its answer is in the message)."""


@contextmanager
def _local_ingestor(settings: Settings) -> Iterator[Ingest]:
    """The ingest service on the local database, auditing into the local log (if enabled)."""
    log = None
    if settings.audit_enabled:
        try:
            log = AuditLog.open(
                settings.audit_log_dir,
                signer=open_signer(settings),
                origin=settings.audit_origin,
            )
        except LogLockedError:
            raise click.ClickException(
                f"the audit log {settings.audit_log_dir} is held by a running service; send the "
                "file to it with --url http://HOST:PORT"
            ) from None
    store = OutcomeStore(outcomes_db_path(settings))
    try:
        audit = (
            None
            if log is None
            else OutcomeAudit(
                log,
                retention_policy(settings.audit_retention_class),
                f"infertrail/{__version__}",
                service=settings.service_name,
            )
        )
        service = OutcomeService(store, audit=audit)
        yield lambda _items, parsed: service.ingest_outcomes(parsed)
    finally:
        store.close()
        if log is not None:
            log.close()


@contextmanager
def _http_ingestor(url: str) -> Iterator[Ingest]:
    """Posts each batch to a running service's ``/v1/outcomes``."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise click.BadParameter(
            f"must start with http:// or https://, got {url!r}", param_hint="--url"
        )
    target = base + OUTCOMES_PATH

    with httpx.Client(timeout=60.0) as client:

        def send(items: list[Any], _parsed: list[Outcome]) -> IngestResult:
            try:
                r = client.post(target, json=items)
            except httpx.HTTPError as exc:
                raise RemoteError(f"cannot post to {target}: {exc}") from None
            if r.status_code != 200:
                raise RemoteError(f"{target} answered {r.status_code}: {r.text[:2000]}")
            body = r.json()
            return IngestResult(
                received=body["received"],
                accepted=body["accepted"],
                duplicates=body["duplicates"],
                unknown=list(body["unknown"]),
            )

        yield send


def _duration(text: str) -> int:
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) < 1:
        raise click.BadParameter(
            f"{text!r} is not a duration such as 3600, 30m, 1h or 1d", param_hint="--every"
        )
    return int(m.group(1)) * _SECONDS[m.group(2)]


@outcomes.command("report")
@click.option("--model", help="Only this model.")
@click.option("--version", "version", help="Only this model version.")
@click.option("--kind", default="label", show_default=True, help="Outcome kind to join.")
@click.option("--from", "start", help="Predictions from (RFC 3339 or YYYY-MM-DD).")
@click.option("--to", "end", help="Predictions before (RFC 3339 or YYYY-MM-DD).")
@click.option("--every", help="Also split by prediction time: 3600, 30m, 1h, 1d.")
@click.option("--positive", help="Binary: the outcome label the score is the probability of.")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Binary: predict positive at >=.")
@click.option("--bins", type=click.IntRange(1, 100), default=10, show_default=True)
@click.option(
    "--estimates/--no-estimates",
    default=True,
    show_default=True,
    help="CBPE's estimates over all predictions beside the realized metrics (kind label).",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def report_cmd(
    ctx: click.Context,
    model: str | None,
    version: str | None,
    kind: str,
    start: str | None,
    end: str | None,
    every: str | None,
    positive: str | None,
    threshold: float | None,
    bins: int,
    estimates: bool,
    fmt: str,
) -> None:
    """Accuracy, precision/recall, ROC AUC, Brier and reliability, the KPI view, and the
    estimated performance (CBPE, every prediction) beside the realized one."""
    settings = settings_of(ctx)
    path = outcomes_db_path(settings)
    if not path.exists():
        raise click.ClickException(f"no outcomes yet: {path} does not exist")
    t0 = parse_time(start, "--from") if start else None
    t1 = parse_time(end, "--to") if end else None
    if t0 is not None and t1 is not None and t0 >= t1:
        raise click.BadParameter(f"--from {start} is not before --to {end}", param_hint="--from")
    defaults = spec_from_settings(settings)

    def spec_for(name: str) -> OutcomeSpec:
        base = defaults(name)
        return OutcomeSpec(
            positive if positive is not None else base.positive,
            threshold if threshold is not None else base.threshold,
        )

    store = OutcomeStore(path)
    try:
        report = performance_report(
            store,
            spec_for,
            kind=kind,
            model=model,
            version=version,
            start_ns=_ns(t0),
            end_ns=_ns(t1),
            every_s=_duration(every) if every else None,
            bins=bins,
            estimators=Estimators(settings.models_dir) if estimates else None,
        )
    finally:
        store.close()
    if fmt == "json":
        click.echo(json.dumps(report_as_dict(report), indent=2))
    else:
        click.echo(report_as_table(report), nl=False)


def _ns(t: datetime | None) -> int | None:
    return None if t is None else unix_ns(t)
