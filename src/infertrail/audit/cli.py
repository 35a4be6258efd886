"""``infertrail keys`` and ``infertrail audit``: thin commands over keys, lake, verify and proofs.

Locations come from :class:`~infertrail.config.Settings` (log ``<data_dir>/audit/log``, lake
``<data_dir>/audit/lake``, signing key ``<data_dir>/keys/audit.key``) unless options say
otherwise. Exit codes: 0 success / intact, 1 tampering or a failed check, 2 usage errors
(bad options, missing log, key or input file).
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from infertrail.audit.checkpoint import NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.compaction import CompactionError, Compactor
from infertrail.audit.cosigned import collect_witnessed
from infertrail.audit.evidence import CheckResult, check_consistency, check_evidence
from infertrail.audit.keys import KeyFileError, generate_signing_key, load_signer, verifier_key_path
from infertrail.audit.lake import Sealer, SealError
from infertrail.audit.ledger import AuditLog, LogCorruptedError, LogLockedError
from infertrail.audit.proofs import ProofError, make_consistency, make_evidence
from infertrail.audit.receipt_check import check_receipt
from infertrail.audit.timestamps import TIMESTAMPS_FILE, TrustRoots, load_trust_roots, rfc3339
from infertrail.audit.verifier_state import (
    Remembered,
    StateError,
    StateFile,
    default_state_path,
)
from infertrail.audit.verify import ANCHOR_SOURCES, VerifyError, VerifyReport, verify_log
from infertrail.audit.verify_receipts import HeldReceipt, ReceiptFileError, load_receipts
from infertrail.audit.witnessed import Witnessed
from infertrail.commandline import UsageProblem, settings_of
from infertrail.config import Settings
from infertrail.progress import progress

__all__ = ["audit", "keys"]

EXIT_TAMPERED = 1


def _verifier(key: str | None, key_file: Path) -> NoteVerifier:
    """The trust anchor: ``--key`` (a key string or a file holding one), else the .pub file."""
    source = key
    if key is not None and Path(key).is_file():
        source = Path(key).read_text().strip()
    elif key is None:
        pub = verifier_key_path(key_file)
        if not pub.is_file():
            raise UsageProblem(
                f"no verifier key: pass --key, or create {pub} (`infertrail keys init`)"
            )
        source = pub.read_text().strip()
    assert source is not None
    try:
        return NoteVerifier.from_key(source)
    except NoteError as exc:
        raise UsageProblem(f"bad verifier key {source[:60]!r}: {exc}") from exc


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"cannot read evidence file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageProblem(f"evidence file {path} holds {type(data).__name__}, not a JSON object")
    return data


def _emit(data: dict[str, Any], out: Path | None) -> None:
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


# ---- keys -------------------------------------------------------------------------------


@click.group()
def keys() -> None:
    """Checkpoint signing keys."""


@keys.command("init")
@click.option("--name", help="Key name, normally the log origin (default: settings audit_origin).")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Default: <data_dir>/keys/audit.key.",
)
@click.pass_context
def keys_init(ctx: click.Context, name: str | None, key_file: Path | None) -> None:
    """Create the log's Ed25519 signing key (never overwrites one) and print its verifier key."""
    settings = settings_of(ctx)
    path = key_file or settings.signing_key_file
    try:
        vkey = generate_signing_key(path, name or settings.audit_origin)
    except (KeyFileError, NoteError) as exc:
        raise UsageProblem(str(exc)) from exc
    click.echo(f"signing key: {path} (keep it secret)", err=True)
    click.echo(f"verifier key ({verifier_key_path(path)}), give it to auditors:", err=True)
    click.echo(vkey)


# ---- audit ------------------------------------------------------------------------------


class _Paths:
    def __init__(
        self, settings: Settings, log_dir: Path | None, lake: str | None, key_file: Path | None
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir or settings.audit_log_dir
        self.lake_url = lake or settings.lake_url
        self.key_file = key_file or settings.signing_key_file

    def require_log(self) -> str:
        """The log's origin from its log.json; UsageProblem if there is no log there."""
        try:
            meta = json.loads((self.log_dir / "log.json").read_bytes())
        except FileNotFoundError:
            raise UsageProblem(f"no audit log at {self.log_dir} (log.json is missing)") from None
        except (OSError, ValueError) as exc:
            raise UsageProblem(f"cannot read {self.log_dir / 'log.json'}: {exc}") from exc
        origin = meta.get("origin") if isinstance(meta, dict) else None
        if not isinstance(origin, str):
            raise UsageProblem(f"{self.log_dir / 'log.json'} names no origin")
        return origin


@click.group()
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Default: <data_dir>/audit/log.",
)
@click.option("--lake", help="Lake path or fsspec URL. Default: <data_dir>/audit/lake.")
@click.option(
    "--key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Signing key. Default: <data_dir>/keys/audit.key.",
)
@click.pass_context
def audit(
    ctx: click.Context, log_dir: Path | None, lake: str | None, key_file: Path | None
) -> None:
    """Verify the audit log, seal it into the lake, make and check proofs."""
    ctx.obj = _Paths(settings_of(ctx), log_dir, lake, key_file)


pass_paths = click.make_pass_decorator(_Paths)


@audit.command()
@click.option(
    "--from-checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    help="An older signed checkpoint you kept: the log must extend it.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes checking files in parallel.",
)
@click.option(
    "--deep",
    is_flag=True,
    help="Re-derive every typed column from the canonical bytes, also in lake files whose "
    "sha256 matches their signed manifest (checks the sealer itself; slower).",
)
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Verifier state: the newest checkpoint verified, which the log must extend next time. "
    "Default: $XDG_CONFIG_HOME/infertrail/verifier/<origin hash>.json (outside the data dir).",
)
@click.option(
    "--no-state",
    is_flag=True,
    help="Neither read nor keep a verifier state (a rollback then goes undetected).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--key", help="Verifier key (or a file holding it). Default: <key-file>.pub.")
@click.option(
    "--offline",
    is_flag=True,
    help="Do not ask the witnesses (settings audit_witnesses) what they cosigned; use only "
    "the cosigned checkpoints kept beside the log, which the operator can delete.",
)
@click.option(
    "--tsa-root",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM file of the time-stamp authority's root certificate(s): check the log's "
    "RFC 3161 tokens. Default: settings audit_tsa_roots_file.",
)
@click.option(
    "--receipts",
    "receipts_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="A directory of decision receipts (*.json: receipts, or whole decision responses): "
    "each receipted record must still be in the log, under its receipt's signed checkpoint.",
)
@pass_paths
def verify(
    paths: _Paths,
    from_checkpoint: Path | None,
    workers: int,
    deep: bool,
    state_path: Path | None,
    no_state: bool,
    as_json: bool,
    key: str | None,
    offline: bool,
    tsa_root: Path | None,
    receipts_dir: Path | None,
) -> None:
    """Recompute the whole log from storage; exit 1 naming the first damage found.

    The log must also extend the checkpoint remembered from the last verify (the verifier
    state, kept outside the data directory), which then moves to the log's newest checkpoint.
    With witnesses configured (audit_witnesses), it must agree with every checkpoint they
    cosigned: asked from them (unless --offline) and kept beside the log.
    """
    origin = paths.require_log()
    verifier = _verifier(key, paths.key_file)
    state, remembered = _load_state(paths, origin, verifier, state_path, no_state)
    witnessed, witness_notes = _witnessed(paths.settings, paths.log_dir, origin, verifier, offline)
    tsa_roots = _tsa_roots(tsa_root or paths.settings.audit_tsa_roots_file)
    held, receipt_notes = _held_receipts(receipts_dir, verifier, origin)
    old = None
    if from_checkpoint is not None:
        try:
            old = from_checkpoint.read_bytes()
        except OSError as exc:
            raise UsageProblem(f"cannot read checkpoint {from_checkpoint}: {exc}") from exc
    with progress(_signed_size(paths.log_dir), "verifying", "records", enabled=not as_json) as bar:
        try:
            report = verify_log(
                paths.log_dir,
                paths.lake_url,
                verifier,
                from_checkpoint=old,
                remembered=remembered.note if remembered is not None else None,
                workers=workers,
                deep=deep,
                tsa_roots=tsa_roots,
                witnessed=witnessed,
                receipts=held,
                on_progress=bar.advance,
            )
        except (VerifyError, LogCorruptedError) as exc:
            raise UsageProblem(str(exc)) from exc
    if state is not None:
        _keep_state(report, state, remembered, verifier, origin, str(paths.log_dir.resolve()))
    report.notes.extend(witness_notes)
    report.notes.extend(receipt_notes)
    if held and report.ok:
        report.notes.append(f"receipts: all {len(held)} receipted records are in the log")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(_describe(report))
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


def _signed_size(log_dir: Path) -> int | None:
    """Records the newest published checkpoint covers: the total of verify's progress bar
    (None when unreadable; verify itself reports why). Not checked here: only a bar's length."""
    try:
        text = (log_dir / "checkpoints" / "latest").read_bytes().split(b"\n")
        return int(text[1])
    except (OSError, IndexError, ValueError):
        return None


def _witnessed(
    settings: Settings, log_dir: Path, origin: str, verifier: NoteVerifier, offline: bool
) -> tuple[list[Witnessed], list[str]]:
    """The checkpoints the configured witnesses cosigned, and notes (none configured: none)."""
    if not settings.audit_witnesses:
        return [], []
    try:
        return collect_witnessed(
            log_dir,
            origin,
            verifier,
            [(w.url, w.key) for w in settings.audit_witnesses],
            settings.audit_witness_quorum,
            timeout_s=settings.audit_witness_timeout_s,
            online=not offline,
        )
    except (NoteError, ValueError) as exc:
        raise UsageProblem(f"bad audit_witnesses: {exc}") from exc


def _held_receipts(
    directory: Path | None, verifier: NoteVerifier, origin: str
) -> tuple[list[HeldReceipt], list[str]]:
    """The receipts of this log in ``directory`` (checked with the key), and notes on the rest."""
    if directory is None:
        return [], []
    try:
        return load_receipts(directory, verifier, origin)
    except ReceiptFileError as exc:
        raise UsageProblem(str(exc)) from exc


def _tsa_roots(path: Path | None) -> TrustRoots | None:
    """The TSA trust roots in ``path`` (PEM); UsageProblem if unreadable or without a root.

    Also UsageProblem without the ``timestamps`` extra: tokens could not be checked.
    """
    if path is None:
        return None
    if importlib.util.find_spec("rfc3161_client") is None:
        raise UsageProblem(
            "checking RFC 3161 tokens needs infertrail[timestamps] (rfc3161_client is not "
            "installed): pip install 'infertrail[timestamps]'"
        )
    try:
        return load_trust_roots(path.read_bytes(), str(path))
    except (OSError, ValueError) as exc:
        raise UsageProblem(f"bad TSA root file: {exc}") from exc


def _load_state(
    paths: _Paths, origin: str, verifier: NoteVerifier, state_path: Path | None, no_state: bool
) -> tuple[StateFile | None, Remembered | None]:
    """The verifier state file and what it remembers (both None with ``--no-state``)."""
    if no_state:
        if state_path is not None:
            raise UsageProblem("--state and --no-state exclude each other")
        return None, None
    try:
        state = StateFile(state_path or default_state_path(origin))
        return state, state.load(verifier, origin)
    except StateError as exc:
        raise UsageProblem(f"{exc} (or --no-state)") from exc


def _keep_state(
    report: VerifyReport,
    state: StateFile,
    remembered: Remembered | None,
    verifier: NoteVerifier,
    origin: str,
    source: str,
) -> None:
    """Move the state to the log's newest checkpoint if it verified, else keep any evidence."""
    now = datetime.now(UTC)
    outcome, size = "kept", remembered.checkpoint.size if remembered is not None else None
    try:
        if report.ok and report.newest_checkpoint:
            outcome, kept = state.advance(
                report.newest_checkpoint.encode(),
                verifier,
                origin,
                source=source,
                seen=remembered,
                now=now,
            )
            size = kept.checkpoint.size if kept is not None else None
        elif report.finding is not None and report.finding.file == "remembered":
            (anchor,) = [a for a in report.anchors if a["source"] == "remembered"]
            state.record_conflict(
                anchor["verdict"],
                anchor["detail"],
                anchor.get("evidence", {}),
                report.newest_checkpoint.encode() or None,
                verifier,
                origin,
                source=source,
                now=now,
            )
    except (OSError, StateError) as exc:
        outcome = "failed"
        report.notes.append(f"verifier state {state.path} not updated: {exc}")
    report.verifier_state = {"path": str(state.path), "outcome": outcome, "size": size}
    if _inside(state.path, source):
        report.notes.append(
            f"the verifier state {state.path} is inside the log's directory: whoever can roll "
            "the log back can roll it back too"
        )


def _inside(path: Path, directory: str) -> bool:
    return path.resolve().is_relative_to(Path(directory).resolve())


def _protection(report: VerifyReport) -> list[str]:
    """What rollback protection the verify had, and what it now remembers."""
    lines = [
        f"rollback protection: {ANCHOR_SOURCES[a['source']]} of size {a['size']}: "
        + ("the log extends it" if a["verdict"] == "consistent" else f"{a['verdict']} (above)")
        for a in report.anchors
    ]
    if not report.anchors:
        lines.append(
            "WARNING: cannot detect a rollback of this log: no remembered checkpoint and no "
            "witnesses"
        )
    state = report.verifier_state
    if state:
        outcome, size, path = state["outcome"], state["size"], state["path"]
        lines.append(
            {
                "created": f"remembered: size {size} in {path}; later verifies detect a "
                "rollback below it",
                "advanced": f"remembered: now size {size} in {path}",
                "unchanged": f"remembered: size {size} in {path}",
                "changed": f"not remembered: another verifier changed {path} meanwhile",
                "kept": f"remembered: still size {size} in {path}"
                if size is not None
                else f"not remembered: nothing kept in {path} from a log that did not verify",
                "failed": f"not remembered: {path} could not be updated",
            }[outcome]
        )
    return lines


def _describe(report: VerifyReport) -> str:
    finding = report.finding
    if finding is None:
        lines = [
            f"OK: {report.origin}: {report.records} records verified "
            f"({report.sealed_records} sealed in {report.files} lake files, "
            f"{report.records - report.sealed_records} in the WAL)",
            f"checkpoints: {report.checkpoints} in the history, newest covers "
            f"{report.checkpoint_size} records; {report.unattested} not yet signed",
            f"root: {report.root}",
        ]
        if report.compactions:
            lines.append(
                f"compacted months: {report.compactions}, each an exact copy of its sources"
            )
        witnessed = [a for a in report.anchors if a["source"] == "witnesses"]
        if report.witnessed_size:
            lines.append(
                f"witnesses: the log extends the {len(witnessed)} checkpoints they cosigned, "
                f"the newest cosigned by a quorum covering {report.witnessed_size} records"
            )
        elif witnessed:
            lines.append(f"witnesses: no checkpoint cosigned by a quorum among {len(witnessed)}")
        stamps = report.timestamps
        if stamps.checked:
            lines.append(
                f"timestamps: {stamps.checked} RFC 3161 tokens by {', '.join(stamps.tsa)} under "
                f"{stamps.trust}: checkpoints {stamps.first_size} ({stamps.first_time}) to "
                f"{stamps.last_size} ({stamps.last_time}), each still in the log"
            )
        return "\n".join(lines + _protection(report) + [f"note: {n}" for n in report.notes])
    where = [f"seq {finding.seq}" if finding.seq is not None else "", finding.file or ""]
    if finding.entry is not None:
        where.append(f"checkpoint #{finding.entry}")
    head = f"TAMPERED: {finding.kind} at {', '.join(w for w in where if w)}: {finding.detail}"
    return "\n".join([head, *_protection(report)])


@audit.command()
@click.option("--seq", type=click.IntRange(min=0), required=True, help="Record to prove.")
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Write here instead of stdout."
)
@pass_paths
def prove(paths: _Paths, seq: int, out: Path | None) -> None:
    """Write inclusion evidence for one record (checkable with only the public key)."""
    paths.require_log()
    try:
        evidence = make_evidence(paths.log_dir, paths.lake_url, seq)
    except ProofError as exc:
        raise click.ClickException(str(exc)) from exc
    _emit(evidence, out)


def _report_check(result: CheckResult) -> None:
    """Print VALID/INVALID with the reason; exit 1 (tampered) when invalid."""
    click.echo(("VALID: " if result.ok else "INVALID: ") + result.reason)
    if not result.ok:
        raise SystemExit(EXIT_TAMPERED)


@audit.command("check-proof")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", required=True, help="The log's verifier key (or a file holding it).")
def check_proof(file: Path, key: str) -> None:
    """Check an evidence file with only the public key (exit 0 valid, 1 not)."""
    _report_check(check_evidence(_read_json(file), _verifier(key, Path()).verifier_key))


@audit.command("check-receipt")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", required=True, help="The log's verifier key (or a file holding it).")
def check_receipt_cmd(file: Path, key: str) -> None:
    """Check a decision's receipt offline, with only the public key (exit 0 valid, 1 not).

    FILE holds the receipt (a response's ``audit_receipt`` object) or the whole response.
    """
    document = _read_json(file)
    if "format" not in document and isinstance(document.get("audit_receipt"), dict):
        document = document["audit_receipt"]
    _report_check(check_receipt(document, _verifier(key, Path()).verifier_key))


@audit.command()
@click.option(
    "--old",
    "old_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The older signed checkpoint.",
)
@click.option(
    "--out", type=click.Path(path_type=Path, dir_okay=False), help="Write here instead of stdout."
)
@pass_paths
def consistency(paths: _Paths, old_file: Path, out: Path | None) -> None:
    """Write evidence that the newest checkpoint extends an older one."""
    paths.require_log()
    try:
        old = old_file.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"cannot read checkpoint {old_file}: {exc}") from exc
    try:
        evidence = make_consistency(paths.log_dir, old)
    except ProofError as exc:
        raise click.ClickException(str(exc)) from exc
    _emit(evidence, out)


@audit.command("check-consistency")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--key", required=True, help="The log's verifier key (or a file holding it).")
def check_consistency_cmd(file: Path, key: str) -> None:
    """Check consistency evidence with only the public key (exit 0 valid, 1 not)."""
    _report_check(check_consistency(_read_json(file), _verifier(key, Path()).verifier_key))


@audit.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was sealed as JSON.")
@pass_paths
def seal(paths: _Paths, as_json: bool) -> None:
    """Seal every committed record into the lake now (the log must not be open elsewhere)."""
    origin = paths.require_log()
    try:
        signer = load_signer(paths.key_file)
    except KeyFileError as exc:
        raise UsageProblem(str(exc)) from exc
    try:
        with AuditLog.open(paths.log_dir, signer=signer, origin=origin) as log:
            sealer = Sealer(log, paths.lake_url, signer)
            pending = log.size - sealer.frontier()
            with progress(pending, "sealing", "records", enabled=not as_json) as bar:
                sealed = sealer.seal(on_progress=bar.advance)
    except LogLockedError as exc:
        raise click.ClickException(f"{exc} (a running service seals in the background)") from exc
    except (SealError, LogCorruptedError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    records = sum(f.manifest.count for f in sealed)
    if as_json:
        files = [
            {"first_seq": f.manifest.first_seq, "last_seq": f.manifest.last_seq, "file": f.path}
            for f in sealed
        ]
        click.echo(json.dumps({"files": files, "records": records}, indent=2, sort_keys=True))
        return
    for f in sealed:
        click.echo(f"sealed {f.manifest.first_seq}..{f.manifest.last_seq} -> {f.path}")
    click.echo(f"{records} records sealed into {len(sealed)} files")


@audit.command()
@click.option("--tsa-url", help="Time-stamp authority URL. Default: settings audit_tsa_url.")
@click.option(
    "--tsa-root",
    type=click.Path(path_type=Path, dir_okay=False),
    help="PEM file of the TSA's root certificate(s). Default: settings audit_tsa_roots_file.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Longest wait for the TSA, seconds. Default: settings audit_tsa_timeout_s.",
)
@click.option("--key", help="Verifier key (or a file holding it). Default: <key-file>.pub.")
@pass_paths
def timestamp(
    paths: _Paths,
    tsa_url: str | None,
    tsa_root: Path | None,
    timeout: float | None,
    key: str | None,
) -> None:
    """Get an RFC 3161 token for the newest checkpoint now, unless it has one (e.g. from cron).

    Safe while a service runs: tokens are appended under a lock, in the log's order. Exit 1 if
    the TSA gives no usable token.
    """
    origin = paths.require_log()
    settings = paths.settings
    url = tsa_url or settings.audit_tsa_url
    if url is None:
        raise UsageProblem("no time-stamp authority: pass --tsa-url or set audit_tsa_url")
    trust = _tsa_roots(tsa_root or settings.audit_tsa_roots_file)
    if trust is None:
        raise UsageProblem("no TSA root: pass --tsa-root or set audit_tsa_roots_file")
    latest = paths.log_dir / "checkpoints" / "latest"
    try:
        note = latest.read_bytes()
    except OSError as exc:
        raise UsageProblem(f"cannot read the newest checkpoint {latest}: {exc}") from exc
    try:
        open_checkpoint(note, _verifier(key, paths.key_file), expected_origin=origin)
    except NoteError as exc:
        raise click.ClickException(f"{latest} does not verify, not stamping it: {exc}") from exc
    from infertrail.audit.tsa import TimestampStore, TsaClient, TsaError, stamp_checkpoint

    try:
        client = TsaClient(url, trust, timeout or settings.audit_tsa_timeout_s)
    except ValueError as exc:
        raise UsageProblem(str(exc)) from exc
    try:
        outcome = stamp_checkpoint(note, client, TimestampStore(paths.log_dir))
    except TsaError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        client.close()
    if outcome.info is None:
        click.echo(f"nothing to stamp: {outcome.skipped}")
        return
    info = outcome.info
    click.echo(
        f"stamped checkpoint {info.checkpoint.size} at {rfc3339(info.gen_time)} by {info.tsa} "
        f"(serial {info.serial}) -> {paths.log_dir / TIMESTAMPS_FILE}"
    )


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> timedelta | None:
    """``--grace``: a number with a unit (``1d``, ``36h``, ``30m``, ``0s``)."""
    if value is None:
        return None
    match = _DURATION_RE.fullmatch(value.strip())
    if not match:
        raise click.BadParameter(
            f"must be a duration like 1d, 36h, 30m or 0s, got {value!r}", ctx, param
        )
    return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])


@audit.command()
@click.option(
    "--grace",
    callback=_duration,
    help="How long after its end a month counts as closed (1d, 36h, 30m, 0s). "
    "Default: settings audit_compact_grace_s (1 day).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
@pass_paths
def compact(paths: _Paths, grace: timedelta | None, as_json: bool) -> None:
    """Write a subject-sorted copy of every closed month not compacted yet (hour files stay).

    Safe while a service runs (it compacts in the background too): writes are write-once.
    """
    origin = paths.require_log()
    try:
        signer = load_signer(paths.key_file)
    except KeyFileError as exc:
        raise UsageProblem(str(exc)) from exc
    if grace is None:
        grace = timedelta(seconds=paths.settings.audit_compact_grace_s)
    t0 = time.perf_counter()
    try:
        compactor = Compactor(paths.lake_url, signer, origin, grace=grace)
        total = sum(m.count for sources in compactor.pending().values() for m in sources)
        with progress(total, "compacting", "records", enabled=not as_json) as bar:
            done = compactor.compact(on_progress=bar.advance)
    except CompactionError as exc:
        raise click.ClickException(str(exc)) from exc
    seconds = time.perf_counter() - t0
    records = sum(c.manifest.count for c in done)
    if as_json:
        months = [
            {"month": c.manifest.month, "records": c.manifest.count, "file": c.path} for c in done
        ]
        summary = {"months": months, "records": records, "seconds": round(seconds, 3)}
        click.echo(json.dumps(summary, indent=2, sort_keys=True))
        return
    for c in done:
        click.echo(f"compacted {c.manifest.month}: {c.manifest.count} records -> {c.path}")
    click.echo(f"{len(done)} months compacted, {records} records, {seconds:.1f} s")


@audit.command("publish-tiles")
@click.argument("dest")
@click.option(
    "--entries",
    is_flag=True,
    help="Also write entry bundles: every record's canonical bytes (pseudonymized subjects, "
    "decisions). Only for a destination as restricted as the compliance API.",
)
@pass_paths
def publish_tiles_cmd(paths: _Paths, dest: str, entries: bool) -> None:
    """Write the log as static C2SP tlog-tiles under DEST (a directory or fsspec URL).

    Incremental and safe while a service runs (run it from cron): tiles already there are
    skipped, the checkpoint is replaced last. Serve DEST for `infertrail audit monitor URL`.
    """
    from infertrail.audit.tilesource import LogTiles, TileUnavailable, publish_tiles

    paths.require_log()
    source = LogTiles(paths.log_dir, paths.lake_url)
    try:
        report = publish_tiles(source, dest, entries=entries)
    except TileUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    except (LogCorruptedError, ValueError, OSError) as exc:
        raise click.ClickException(f"cannot publish {dest}: {exc}") from exc
    finally:
        source.close()
    click.echo(
        f"published {dest}: checkpoint of size {report.tree_size}; {report.written} files "
        f"written, {report.skipped} already there"
    )
