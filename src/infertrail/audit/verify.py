"""Verify an audit log from storage alone and name the first damage found.

Reads the lake (via its signed manifests), then the unsealed WAL tail, never a running AuditLog,
so it works read-only while the writer runs or is stopped. Every leaf hash is recomputed from the
stored record bytes; seqs must be dense and in order; typed lake columns must equal what the
canonical bytes say (re-derived for files whose bytes changed, or all with ``deep``); file sha256
and signed roots (manifests, every checkpoint in the history, an optional older checkpoint the
caller kept) must match roots recomputed from the leaves. The recorded leaf hashes (the lake's
``leaf_hash`` column, ``tree/leaves.bin``) only serve to locate damage: the signatures are what
is trusted.

Compacted months (:mod:`infertrail.audit.compaction`) are derived copies: once the hour files
checked out, each is checked against them and the log's leaves
(:mod:`infertrail.audit.compaction_check`).

RFC 3161 time-stamp tokens kept beside the checkpoints (:mod:`infertrail.audit.timestamps`) are
checked when the caller gives the TSA's trust roots: each token against its checkpoint and the
roots, their genTimes against the log's order, and each stamped checkpoint against the roots
recomputed from the records, like a kept checkpoint (a rewrite after the stamp is a
``rollback``). Their findings come after the log's own damage.

Trust anchors are checkpoints held outside the operator's reach: one the caller kept
(``from_checkpoint``) and the one a verifier remembered from its last run (``remembered``,
:mod:`infertrail.audit.verifier_state`). The walk recomputes the root at each one's size; after
it, a log whose own newest checkpoint is smaller is a ``rollback`` (its records intact, changed
or gone, said which) and one whose records give another root there is a ``fork``. Without any
anchor nothing outside the operator was consulted, and the report says it cannot tell a rollback
(``rollback_protection``).

Files are checked on their own (:mod:`infertrail.audit.verify_files`), in worker processes when
``workers > 1``; each returns the roots of the aligned subtrees it hashed, and this module joins
them in seq order with a :class:`~infertrail.audit.subtrees.CompactTree`.
"""

from __future__ import annotations

import base64
import json
import multiprocessing
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, get_args

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier, open_checkpoint
from infertrail.audit.commitnote import COMMIT_FILE, read_commit_notes
from infertrail.audit.compaction import compaction_names
from infertrail.audit.compaction_check import CompactionTask, check_compaction
from infertrail.audit.framing import LogCorruptedError, read_frames
from infertrail.audit.lake import LakeReader
from infertrail.audit.manifest import range_of
from infertrail.audit.subtrees import CompactTree
from infertrail.audit.timestamps import (
    TIMESTAMPS_FILE,
    TimestampSummary,
    TrustRoots,
    check_entries,
    rfc3339,
    split_lines,
    summarize,
)
from infertrail.audit.verifier_state import judge_by_recomputed
from infertrail.audit.verify_files import DamageKind, FileResult, FileTask, Finding, check_file
from infertrail.audit.verify_receipts import (
    RECEIPT_SOURCE,
    HeldReceipt,
    beyond_finding,
    covered_by_receipts,
    leaf_finding,
    receipt_checks,
    root_finding,
)
from infertrail.audit.wal import list_segments
from infertrail.audit.witnessed import Witnessed, judge_witnessed

__all__ = ["DAMAGE_KINDS", "Finding", "VerifyError", "VerifyReport", "verify_log"]

DAMAGE_KINDS: tuple[str, ...] = get_args(DamageKind)
_RETRIES = 3  # re-reads when the sealer moved records from the WAL to the lake meanwhile
Check = tuple[int, bytes, str, int | None]  # tree size, signed root, source, history entry
# Where trust anchors come from, and how the report names the protection each gives.
ANCHOR_SOURCES = {
    "remembered": "a remembered checkpoint",
    "from_checkpoint": "a checkpoint kept elsewhere",
    "witnesses": "a witness quorum",
}


class VerifyError(RuntimeError):
    """The log cannot be verified at all (no log there, unreadable metadata): a usage error."""


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_log`; ``finding`` is None when the log is intact."""

    origin: str
    finding: Finding | None = None
    records: int = 0
    sealed_records: int = 0
    files: int = 0
    compactions: int = 0  # compacted months checked (after the hour files checked out)
    segments: int = 0
    checkpoints: int = 0
    checkpoint_size: int = 0
    unattested: int = 0  # records past the newest checkpoint: intact framing, not yet signed
    root: str = ""  # base64 root of all records read
    notes: list[str] = field(default_factory=list)
    # Trust anchors consulted, each {"source", "size", "root", "verdict", "detail"}: sources in
    # ANCHOR_SOURCES. Witness cosignature checks add theirs with source "witnesses".
    anchors: list[dict[str, Any]] = field(default_factory=list)
    newest_checkpoint: str = ""  # the log's newest signed checkpoint note (what a verifier keeps)
    verifier_state: dict[str, Any] = field(default_factory=dict)  # set by the CLI: path, outcome
    timestamps: TimestampSummary = field(default_factory=TimestampSummary)  # RFC 3161 tokens
    witnessed_size: int = 0  # the newest checkpoint a witness quorum cosigned, if consistent

    @property
    def ok(self) -> bool:
        return self.finding is None

    @property
    def rollback_protection(self) -> str:
        """What outside the operator's reach was consulted, or "none" (then a rollback of the
        log's checkpoints and records together cannot be told from an honest log)."""
        used = {a["source"] for a in self.anchors}
        kinds = [text for source, text in ANCHOR_SOURCES.items() if source in used]
        return " and ".join(kinds) if kinds else "none"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--json`` output)."""
        return {"ok": self.ok, "rollback_protection": self.rollback_protection, **asdict(self)}


def verify_log(
    log_dir: Path,
    lake_url: str,
    verifier: NoteVerifier,
    *,
    from_checkpoint: bytes | None = None,
    remembered: bytes | None = None,
    witnessed: Sequence[Witnessed] = (),
    workers: int = 1,
    deep: bool = False,
    tsa_roots: TrustRoots | None = None,
    receipts: Sequence[HeldReceipt] = (),
    on_progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Verify everything stored for the log in ``log_dir`` and the lake at ``lake_url``.

    ``from_checkpoint``: an older signed checkpoint the caller kept; ``remembered``: the one a
    verifier remembered (``StateFile``); the log must have grown consistently from each (else
    ``rollback`` or ``fork``, naming both sizes and roots); ``witnessed``: checkpoints the
    log's witnesses cosigned (:mod:`infertrail.audit.witnessed`), each an anchor the same way,
    a disagreement named after its witnesses and located between the witnessed sizes that
    still match and the first that does not. ``workers > 1`` checks files in that
    many processes and gives the same report; they start with multiprocessing's forkserver
    method, so a script that calls this must, as for any multiprocessing, guard its entry point with
    ``if __name__ == "__main__":`` (the CLI does). ``deep`` also re-derives the typed columns of
    lake files (and compacted copies) whose bytes match their signed manifest (a check of the
    sealer itself). ``tsa_roots``: the trust roots of the time-stamp authority, to check the
    log's time-stamp tokens (without them, or without the ``timestamps`` extra, the tokens are
    counted and a note says they were not checked).
    ``receipts`` (checked with the log's key already, :mod:`infertrail.audit.verify_receipts`):
    each receipted record must hash to its receipt's leaf, and the log's root at each receipt's
    tree size must be the one its checkpoint signs (else ``modified`` or ``truncated``, naming
    the receipt's file).
    Compactions are checked once the rest is intact. ``on_progress`` is called with the
    number of records of each lake file or WAL segment once it is checked (a progress bar; a
    verify that raced the sealer and starts over counts its records again). Raises VerifyError
    if there is no readable log at ``log_dir``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    log_dir = Path(log_dir)
    origin = _read_origin(log_dir)
    stamped = _Stamped.check(log_dir, verifier, origin, tsa_roots)
    anchors = {"from_checkpoint": from_checkpoint, "remembered": remembered}
    for _ in range(_RETRIES):
        names = LakeReader(lake_url).manifest_names()
        report, raced = _verify_once(
            log_dir,
            lake_url,
            verifier,
            origin,
            anchors,
            workers,
            deep,
            stamped.checks,
            witnessed,
            receipts,
            on_progress,
        )
        if not raced and (report.ok or LakeReader(lake_url).manifest_names() == names):
            break
    stamped.report_into(report)
    if report.ok:
        report.finding = _verify_compactions(
            log_dir, lake_url, verifier, origin, workers, deep, report
        )
    return report


def _verify_compactions(
    log_dir: Path,
    lake_url: str,
    verifier: NoteVerifier,
    origin: str,
    workers: int,
    deep: bool,
    report: VerifyReport,
) -> Finding | None:
    """Check every compacted month against the (verified) log; the finding of the lowest month.

    Runs once the hour files checked out, so their manifests and ``tree/leaves.bin`` are sound
    references for the copies.
    """
    reader = LakeReader(lake_url)
    hour_manifests = frozenset(reader.manifest_names())
    tasks = [
        CompactionTask(
            name, lake_url, str(log_dir), origin, verifier.verifier_key, hour_manifests, deep
        )
        for name in compaction_names(reader)
    ]
    report.compactions = len(tasks)
    if workers == 1 or len(tasks) < 2:
        findings = list(map(check_compaction, tasks))
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["__main__", check_compaction.__module__])
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            findings = list(pool.map(check_compaction, tasks))
    return next((f for f in findings if f is not None), None)


@dataclass
class _Stamped:
    """The log's time-stamp tokens, checked on their own; the walk checks their checkpoints."""

    summary: TimestampSummary
    checks: list[Check]  # (size, root, "timestamp", line) of every token that checked out
    times: dict[int, str]  # line -> genTime of those tokens
    finding: Finding | None = None
    note: str = ""

    @classmethod
    def check(
        cls, log_dir: Path, verifier: NoteVerifier, origin: str, trust: TrustRoots | None
    ) -> _Stamped:
        try:
            lines, torn = split_lines((log_dir / TIMESTAMPS_FILE).read_bytes())
        except FileNotFoundError:
            return cls(TimestampSummary(), [], {})
        note = f"{TIMESTAMPS_FILE}: a torn last line (being appended), ignored" if torn else ""
        unchecked = cls(TimestampSummary(tokens=len(lines)), [], {})
        if trust is None:
            unchecked.note = f"{len(lines)} time-stamp tokens not checked: no TSA root given"
            return unchecked
        try:
            stamps, problem = check_entries(lines, verifier, origin, trust)
        except ModuleNotFoundError as exc:
            unchecked.note = (
                f"{len(lines)} time-stamp tokens not checked: {exc.name} is not installed "
                "(pip install 'infertrail[timestamps]')"
            )
            return unchecked
        summary = summarize([info for _, info in stamps], len(lines), trust.source)
        checks: list[Check] = [
            (info.checkpoint.size, info.checkpoint.root, "timestamp", line) for line, info in stamps
        ]
        finding = None
        if problem is not None:
            finding = Finding(problem.kind, None, TIMESTAMPS_FILE, problem.detail, problem.entry)
        times = {line: rfc3339(info.gen_time) for line, info in stamps}
        return cls(summary, checks, times, finding, note)

    def report_into(self, report: VerifyReport) -> None:
        """Add the summary and note; the tokens' finding when the log itself is intact."""
        report.timestamps = self.summary
        if self.note:
            report.notes.append(self.note)
        if report.ok:
            report.finding = self.finding
        if report.ok:
            beyond = [c for c in self.checks if c[0] > report.records]
            if beyond:
                size, _, _, line = min(beyond, key=lambda c: c[0])
                detail = (
                    f"the log holds {report.records} records; a checkpoint of {size} was "
                    "time-stamped: the log was cut back after it was stamped"
                )
                report.finding = Finding("rollback", report.records, TIMESTAMPS_FILE, detail, line)
        finding = report.finding
        if finding is not None and finding.file == TIMESTAMPS_FILE and finding.kind == "rollback":
            assert finding.entry is not None
            stamped_at = f" (its token's genTime: {self.times[finding.entry]})"
            report.finding = replace(finding, detail=finding.detail + stamped_at)


def _read_origin(log_dir: Path) -> str:
    try:
        meta = json.loads((log_dir / "log.json").read_bytes())
    except FileNotFoundError as exc:
        raise VerifyError(f"no audit log at {log_dir} (log.json is missing)") from exc
    except ValueError as exc:
        raise VerifyError(f"{log_dir / 'log.json'} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("origin"), str):
        raise VerifyError(f"{log_dir / 'log.json'} has no origin")
    origin: str = meta["origin"]
    return origin


def _verify_once(
    log_dir: Path,
    lake_url: str,
    verifier: NoteVerifier,
    origin: str,
    anchor_notes: dict[str, bytes | None],
    workers: int,
    deep: bool,
    stamp_checks: list[Check],
    witnessed: Sequence[Witnessed],
    receipts: Sequence[HeldReceipt] = (),
    on_progress: Callable[[int], None] | None = None,
) -> tuple[VerifyReport, bool]:
    report = VerifyReport(origin)
    checks, finding = _checkpoint_checks(log_dir, verifier, origin, report)
    anchors: list[_Anchor] = []
    if finding is None:
        anchors, finding = _open_anchors(anchor_notes, verifier, origin)
        anchors += [_Anchor("witnesses", w.checkpoint, witnessed=w) for w in witnessed]
    checks += stamp_checks
    checks += receipt_checks(receipts)
    if finding is not None:
        report.finding = finding
        return report, False
    checks.sort(key=lambda c: c[0])
    sizes = tuple(sorted({c[0] for c in checks} | {a.checkpoint.size for a in anchors}))
    seqs = tuple(sorted({r.claim.seq for r in receipts}))
    tasks = _tasks(log_dir, lake_url, origin, verifier.verifier_key, sizes, deep, seqs)
    if workers == 1 or len(tasks) < 2:
        results: Iterable[FileResult] = map(check_file, tasks)
        report, raced = _merge(results, checks, report, anchors, receipts, on_progress)
    else:
        context = multiprocessing.get_context("forkserver")
        # Workers fork from a server that imported the checks (pyarrow, DuckDB) and the main
        # module once, instead of each importing them: that costs more than checking a small log.
        context.set_forkserver_preload(["__main__", check_file.__module__])
        with ProcessPoolExecutor(min(workers, len(tasks)), mp_context=context) as pool:
            try:
                results = pool.map(check_file, tasks)
                report, raced = _merge(results, checks, report, anchors, receipts, on_progress)
            finally:
                pool.shutdown(cancel_futures=True)
    if not raced:
        _judge_anchors(report, anchors, verifier)
    return report, raced


def _checkpoint_checks(
    log_dir: Path, verifier: NoteVerifier, origin: str, report: VerifyReport
) -> tuple[list[Check], Finding | None]:
    """Signed roots to check: every history entry and ``latest``; bad_signature/rollback first."""
    where = "checkpoints/history.log"
    try:
        notes, _torn = read_frames(log_dir / where, repair=False)  # a torn tail: being appended
    except LogCorruptedError as exc:
        return [], Finding("bad_signature", None, where, f"history framing damaged: {exc}")
    checks: list[Check] = []
    newest: tuple[int, bytes] = (-1, b"")  # (size, note) of the largest checkpoint
    for entry, note in enumerate(notes):
        try:
            cp = open_checkpoint(note, verifier, expected_origin=origin)
        except NoteError as exc:
            return [], Finding("bad_signature", None, where, f"checkpoint {entry}: {exc}", entry)
        newest = max(newest, (cp.size, note))
        if checks and cp.size < checks[-1][0]:
            detail = f"checkpoint {entry} has size {cp.size}, below the previous {checks[-1][0]}"
            return [], Finding("rollback", cp.size, where, detail, entry)
        checks.append((cp.size, cp.root, "history", entry))
    try:
        latest_note = (log_dir / "checkpoints/latest").read_bytes()
        latest = open_checkpoint(latest_note, verifier, expected_origin=origin)
        checks.append((latest.size, latest.root, "latest", None))
        newest = max(newest, (latest.size, latest_note))
    except FileNotFoundError:
        report.notes.append("checkpoints/latest is missing; using the history only")
    except NoteError as exc:
        return [], Finding("bad_signature", None, "checkpoints/latest", str(exc))
    # The group commits' checkpoints: a slot torn by a crash or a racing write is no note.
    for note in read_commit_notes(log_dir / "checkpoints" / COMMIT_FILE):
        try:
            cp = open_checkpoint(note, verifier, expected_origin=origin)
        except NoteError as exc:
            return [], Finding("bad_signature", None, f"checkpoints/{COMMIT_FILE}", str(exc))
        checks.append((cp.size, cp.root, "commit", None))
        newest = max(newest, (cp.size, note))
    report.checkpoints = len(notes)
    report.checkpoint_size = max((c[0] for c in checks), default=0)
    report.newest_checkpoint = newest[1].decode()
    return checks, None


@dataclass
class _Anchor:
    """A checkpoint from outside the log and the root the walk recomputed at its size."""

    source: str  # a key of ANCHOR_SOURCES
    checkpoint: Checkpoint
    recomputed: bytes | None = None  # None until the walk reaches its size
    witnessed: Witnessed | None = None  # its cosigners, when source is "witnesses"


def _open_anchors(
    notes: dict[str, bytes | None], verifier: NoteVerifier, origin: str
) -> tuple[list[_Anchor], Finding | None]:
    """The anchors given (their signatures checked), or a bad_signature finding naming one."""
    anchors = []
    for source, note in notes.items():
        if note is None:
            continue
        try:
            anchors.append(_Anchor(source, open_checkpoint(note, verifier, expected_origin=origin)))
        except NoteError as exc:
            return [], Finding("bad_signature", None, source, str(exc))
    return anchors, None


def _anchor_roots(tree: CompactTree, result: FileResult, anchors: list[_Anchor]) -> None:
    """Record the root at every anchor's size inside this result (before the tree takes it)."""
    end = tree.size + result.count
    for anchor in anchors:
        size = anchor.checkpoint.size
        if anchor.recomputed is None and tree.size < size <= end:
            at = tree.copy()
            at.extend(result.blocks[size])
            anchor.recomputed = at.root()


def _judge_anchors(report: VerifyReport, anchors: list[_Anchor], verifier: NoteVerifier) -> None:
    """Judge each anchor against the walked log; the first rollback or fork is the finding.

    The log's own damage, found by the walk, comes first: it is located more precisely.
    """
    newest = None
    if report.newest_checkpoint:  # verified already: only its size and root are needed here
        newest = open_checkpoint(report.newest_checkpoint.encode(), verifier)
    for anchor in anchors:
        if anchor.witnessed is not None:
            _judge_witnessed(report, anchor.witnessed, anchor.recomputed, anchors)
            continue
        verdict = judge_by_recomputed(anchor.checkpoint, newest, report.records, anchor.recomputed)
        report.anchors.append(
            {
                "source": anchor.source,
                "size": anchor.checkpoint.size,
                "root": base64.b64encode(anchor.checkpoint.root).decode(),
                "verdict": verdict.kind,
                "detail": verdict.detail,
                **({"evidence": verdict.evidence()} if not verdict.ok else {}),
            }
        )
        if report.finding is None and verdict.kind in ("rollback", "fork"):
            kind: DamageKind = "rollback" if verdict.kind == "rollback" else "fork"
            seq = report.checkpoint_size if kind == "rollback" else None
            report.finding = Finding(kind, seq, anchor.source, verdict.detail)


def _judge_witnessed(
    report: VerifyReport,
    witnessed: Witnessed,
    recomputed: bytes | None,
    anchors: list[_Anchor],
) -> None:
    """A witnessed checkpoint against the walked log: its anchor entry; a disagreement's finding.

    A fork is located from the largest smaller witnessed size whose root the records still
    give: the log's own checkpoints cannot bound it, they may be re-signed.
    """
    size = witnessed.checkpoint.size
    matched = [
        a.checkpoint.size
        for a in anchors
        if a.witnessed is not None
        and a.recomputed == a.checkpoint.root
        and a.checkpoint.size < size
    ]
    judged = judge_witnessed(
        witnessed, report.records, report.checkpoint_size, recomputed, max(matched, default=0)
    )
    if judged is None and witnessed.quorum:
        report.witnessed_size = max(report.witnessed_size, size)
    report.anchors.append(
        {
            "source": "witnesses",
            "size": size,
            "root": base64.b64encode(witnessed.checkpoint.root).decode(),
            "verdict": "consistent" if judged is None else judged.kind,
            "detail": f"the log extends what {witnessed.who} cosigned"
            if judged is None
            else judged.detail,
            "cosigners": list(witnessed.cosigners),
            "quorum": witnessed.quorum,
            "found": list(witnessed.sources),
        }
    )
    if report.finding is None and judged is not None:
        kind: DamageKind = "rollback" if judged.kind == "rollback" else "fork"
        where = "witnesses " + ", ".join(witnessed.cosigners)
        report.finding = Finding(kind, judged.seq, where, judged.detail)


def _tasks(
    log_dir: Path,
    lake_url: str,
    origin: str,
    vkey: str,
    sizes: tuple[int, ...],
    deep: bool,
    leaf_seqs: tuple[int, ...] = (),
) -> list[FileTask]:
    """One task per lake file, then per WAL segment; ``leaf_seqs``: whose leaves to send back."""
    common = {"log_dir": str(log_dir), "lake_url": lake_url, "origin": origin, "vkey": vkey}
    tasks, frontier = [], 0
    for name in LakeReader(lake_url).manifest_names():
        first, last = range_of(name)
        inside = tuple(s for s in sizes if first < s <= last + 1)
        wanted = tuple(s for s in leaf_seqs if first <= s <= last)
        tasks.append(FileTask("lake", name, first, last, 0, False, **common, check_sizes=inside,
                              deep=deep, leaf_seqs=wanted))  # fmt: skip
        frontier = max(frontier, last + 1)
    wal_dir = log_dir / "wal"
    segments = list_segments(wal_dir) if wal_dir.is_dir() else []
    # Segments entirely below the frontier are sealed copies the ledger has not retired yet:
    # only their frames are checked (a damaged copy is reported, though the lake has the record).
    bounds = [first for first, _ in segments[1:]] + [None]
    for (first, path), next_first in zip(segments, bounds, strict=True):
        rel = str(path.relative_to(log_dir))
        inside = tuple(s for s in sizes if s > first and (next_first is None or s <= next_first))
        wanted = tuple(
            s for s in leaf_seqs if first <= s and (next_first is None or s < next_first)
        )
        tasks.append(FileTask("wal", rel, first, -1, frontier, next_first is None, **common,
                              check_sizes=inside, deep=deep, leaf_seqs=wanted))  # fmt: skip
    return tasks


def _merge(
    results: Iterable[FileResult],
    checks: list[Check],
    report: VerifyReport,
    anchors: list[_Anchor],
    receipts: Sequence[HeldReceipt] = (),
    on_progress: Callable[[int], None] | None = None,
) -> tuple[VerifyReport, bool]:
    """Walk the results in seq order: density and order, row findings, signed roots."""
    tree = CompactTree()
    state = {"check": 0, "verified": 0}
    deferred: list[Finding] = []  # stamped checkpoints the log no longer has
    expected = 0
    for result in results:
        task = result.task
        if result.vanished:
            return report, True
        if task.kind == "lake":
            report.files += 1
        else:
            report.segments += 1
        if result.start > expected:
            gap = Finding(
                "missing", expected, task.name, f"no lake file or WAL segment holds seq {expected}"
            )
            report.finding = gap
            return report, task.kind == "wal"
        first = _first_finding(_order_finding(result, expected), result)
        if first is None and receipts:
            first = leaf_finding(result.leaves_at, receipts)
        if first is not None:
            report.finding = first
            return report, False
        _anchor_roots(tree, result, anchors)
        bad = _extend(tree, result, checks, state, deferred)
        if bad is not None:
            report.finding = bad
            return report, False
        expected += result.count
        if on_progress is not None:
            on_progress(result.count)
        if task.kind == "lake":
            report.sealed_records += result.count
            if (
                result.root is not None
                and tree.size == task.last + 1
                and tree.root() != result.root
            ):
                kind: DamageKind = "modified" if result.sha_ok else "file_replaced"
                detail = "records do not hash to the root signed in the manifest"
                report.finding = Finding(kind, task.first, result.file, detail)
                return report, False
            if not result.sha_ok:
                detail = "file bytes differ from the sealed file (sha256), records check out"
                report.finding = Finding("file_replaced", task.first, result.file, detail)
                return report, False
        if result.torn is not None:
            row, reason, complete = result.torn
            seq = result.start + row
            if complete and seq < max(report.checkpoint_size, covered_by_receipts(receipts)):
                detail = f"{reason}; a signed checkpoint or receipt covers the record"
                report.finding = Finding("wal_corrupt", seq, task.name, detail)
                return report, False
            report.notes.append(f"torn tail in {task.name}: {reason} (seq {seq})")
    report.records = expected
    report.root = base64.b64encode(tree.root()).decode()
    report.unattested = max(0, expected - report.checkpoint_size)
    if expected < report.checkpoint_size:
        detail = (
            f"only {expected} records remain; a signed checkpoint covers {report.checkpoint_size}"
        )
        report.finding = Finding("truncated", expected, None, detail)
    if report.finding is None:
        report.finding = beyond_finding(expected, receipts)
    if report.finding is None and deferred:
        report.finding = deferred[0]
    return report, False


def _first_finding(order: tuple[int, Finding] | None, result: FileResult) -> Finding | None:
    """The earlier of the order finding and the result's own (row) finding.

    A forged record inserted before a real one fails the leaf check one row before its seq
    shows up twice: that is an insertion, not a modification.
    """
    local = result.finding
    if order is None or local is None:
        return local if order is None else order[1]
    row, found = order
    if found.kind == "inserted" and found.seq == local.seq:
        return found
    # On the same row, damage to the whole file or frame explains the order problem, while a
    # leaf mismatch is the symptom of records being out of place.
    whole = local.kind in ("file_missing", "file_replaced", "manifest_mismatch", "wal_corrupt")
    return local if result.row < row or (result.row == row and whole) else found


def _order_finding(result: FileResult, expected: int) -> tuple[int, Finding] | None:
    """Where this result's claimed seqs stop being start, start+1, ..., and what that means."""
    base = expected - result.start  # >0: leading records already covered (overlap)
    if base > 0:
        return 0, Finding(
            "inserted", result.start, result.task.name, f"seqs from {result.start} appear twice"
        )
    if result.seqs is not None:
        seqs = result.seqs
        for i, seq in enumerate(seqs):
            want = expected + i
            if seq == want:
                continue
            name = result.file or result.task.name
            if seq < want:
                detail = f"seq {seq} appears again at position {want}"
                return i, Finding("inserted", seq, name, detail)
            if want in seqs[i + 1 :]:
                detail = f"seq {seq} stored where seq {want} belongs"
                return i, Finding("reordered", want, name, detail)
            return i, Finding("missing", want, name, f"seq {want} is absent (next stored is {seq})")
    if result.task.kind == "lake" and result.task.last + 1 != expected + result.count:
        return result.count, Finding(
            "missing", expected + result.count, result.file, "file ends before its manifest's range"
        )
    return None


def _extend(
    tree: CompactTree,
    result: FileResult,
    checks: list[Check],
    state: dict[str, int],
    deferred: list[Finding],
) -> Finding | None:
    """Append the result's subtrees, checking each signed root whose tree size is reached.

    Checks are sorted by size; the tree grows only by whole files, so a size inside this file is
    checked on a copy extended by the file's subtrees up to that size. A stamped checkpoint
    that does not match goes to ``deferred``: damage the log's own checkpoints show later in
    the walk says more (a modified record), so it is reported first.
    """
    end = tree.size + result.count
    while state["check"] < len(checks):
        check = checks[state["check"]]
        if check[0] > end:
            break
        at = tree
        if check[0] > tree.size:
            at = tree.copy()
            at.extend(result.blocks[check[0]])
        bad = _check_root(at, check, state["verified"])
        if bad is None:
            state["verified"] = check[0]
        elif check[2] == "timestamp":
            deferred.append(bad)
        else:
            return bad
        state["check"] += 1
    if result.count:
        tree.extend(result.blocks[end])
    return None


def _check_root(tree: CompactTree, check: Check, lower: int) -> Finding | None:
    """None if the recomputed root matches the signed one; else where the damage must lie."""
    size, root, source, entry = check
    if tree.root() == root:
        return None
    if source == "timestamp":
        detail = (
            f"the log's first {size} records do not hash to the checkpoint of that size "
            "time-stamped here: the log was rewritten after it was stamped"
        )
        return Finding("rollback", lower, TIMESTAMPS_FILE, detail, entry)
    if source.startswith(RECEIPT_SOURCE):
        return root_finding(source, size, entry or 0)
    where = {"history": "checkpoints/history.log", "commit": f"checkpoints/{COMMIT_FILE}"}.get(
        source, "checkpoints/latest"
    )
    detail = f"records in [{lower}, {size}) do not hash to the root signed for size {size}"
    return Finding("modified", lower, where, detail, entry)
