"""RFC 3161 time-stamp tokens over the audit log's checkpoints: their file, and the pure checks.

The log's operator holds its signing key, so a signed checkpoint says what the log was, never
when: the operator could rewrite the records and re-sign a whole new history. A time-stamp token
from a time-stamp authority (TSA) outside the operator's reach says "these bytes existed at
genTime"; the operator cannot backdate it. Kept over the checkpoints as the log grows, tokens
pin the history: a later rewrite leaves a token over a checkpoint the log no longer has.

**What is stamped**: the checkpoint body (origin, size and root lines, :meth:`Checkpoint.body`),
the signed text of the note rather than the note: cosignatures added later (witnesses) change
the note, not its body, so one token keeps covering it. The message imprint is SHA-256 of it.

**Where tokens are kept**: ``checkpoints/timestamps.jsonl`` in the log directory, one JSON object
per line, appended in the order the tokens were obtained: ``{"checkpoint": <the signed note,
as text>, "token": <base64 of the DER TimeStampResp>}``. The note travels with the token, so an
entry stands alone: the log key signed the checkpoint, the TSA stamped its body. Only the last
line may be torn (a crash mid-append); readers ignore it.

**Checks** (:func:`check_token`, :func:`check_order`; no network, no storage): the TSA granted
the token; its imprint is SHA-256 of the checkpoint body; its signer is a time-stamping
certificate (critical extended key usage ``timeStamping``) issued under a configured trust root;
its CMS signature verifies (certificates valid at genTime); and genTimes never decrease as the
checkpoints grow, since tokens are obtained in the log's order. Whether the log still has each
stamped checkpoint is :mod:`infertrail.audit.verify`'s part: it recomputes the root at each
stamped size from the records.

Parsing and checking tokens needs ``rfc3161-client`` (the ``timestamps`` extra), imported only
when a token is checked: the rest of this module, and the log, work without it.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from infertrail.audit.checkpoint import Checkpoint, NoteError, NoteVerifier

if TYPE_CHECKING:
    from rfc3161_client import TimeStampResponse

__all__ = [
    "TIMESTAMPS_FILE",
    "EntryProblem",
    "StampEntry",
    "StampInfo",
    "TimestampError",
    "TimestampSummary",
    "TrustRoots",
    "check_entries",
    "check_order",
    "check_token",
    "encode_entry",
    "imprint",
    "load_trust_roots",
    "note_body",
    "parse_entry",
    "rfc3339",
    "split_lines",
    "summarize",
]

#: The tokens, relative to the log directory.
TIMESTAMPS_FILE = "checkpoints/timestamps.jsonl"
#: A line longer than this is damage, not an entry (a note is < 1 kB, a token a few kB).
MAX_ENTRY_BYTES = 256 * 1024

_SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
_GRANTED = 0  # PKIStatus granted; "granted with modifications" is not accepted
_MAX_CHAIN = 8  # certificates from the signer up to a root, at most

Problem = Literal["mismatch", "untrusted"]
#: The damage kinds (audit.verify.DAMAGE_KINDS) an entry of the tokens file can show.
EntryKind = Literal["timestamp_mismatch", "timestamp_untrusted", "timestamp_order", "bad_signature"]


class TimestampError(ValueError):
    """A token does not check out; ``kind`` says how.

    ``mismatch``: the entry or token is unreadable or altered, or the token is over other bytes
    than its checkpoint (moved to another checkpoint), or the TSA did not grant it.
    ``untrusted``: it is not signed by a time-stamping certificate under the trusted roots.
    """

    def __init__(self, kind: Problem, message: str) -> None:
        super().__init__(message)
        self.kind: Problem = kind


@dataclass(frozen=True, slots=True)
class StampEntry:
    """One line of the tokens file: a signed checkpoint note and the TSA's response over it."""

    note: bytes
    token: bytes  # DER TimeStampResp


@dataclass(frozen=True, slots=True)
class StampInfo:
    """What a token that checked out says: ``checkpoint`` existed at ``gen_time`` (UTC)."""

    checkpoint: Checkpoint
    gen_time: datetime
    accuracy: timedelta  # zero when the TSA gave none
    serial: int
    tsa: str  # the signer certificate's subject, RFC 4514
    policy: str  # the TSA policy OID


@dataclass(frozen=True, slots=True)
class TrustRoots:
    """The certificates a token's signer must chain to (self-signed) and may chain through."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()
    source: str = ""  # where they came from (a file name), for reports


@dataclass
class TimestampSummary:
    """Which tokens ``verify`` checked (its report's ``timestamps``); times in RFC 3339 UTC."""

    tokens: int = 0  # complete entries in the tokens file
    checked: int = 0  # tokens that checked out against their checkpoint and the trust roots
    trust: str = ""  # where the trust roots came from ("" when none was given: not checked)
    tsa: list[str] = field(default_factory=list)  # the signers' certificate subjects
    first_size: int | None = None  # the smallest stamped checkpoint, and its genTime
    first_time: str | None = None
    last_size: int | None = None  # the largest stamped checkpoint, and its genTime
    last_time: str | None = None


@dataclass(frozen=True, slots=True)
class EntryProblem:
    """The first entry of the tokens file that does not check out, as verify reports it."""

    entry: int  # 0-based line of the tokens file
    kind: EntryKind
    detail: str


def imprint(body: bytes) -> bytes:
    """The message imprint a token over checkpoint ``body`` carries: its SHA-256."""
    return hashlib.sha256(body).digest()


def note_body(note: bytes) -> bytes:
    """The checkpoint body (the signed text) of a signed checkpoint note, checked to parse.

    Does not check the signature (the caller does, with the log's key, where it matters);
    NoteError if the note has no signature block or its text is not a checkpoint.
    """
    split = note.rfind(b"\n\n")
    if split < 0:
        raise NoteError("note has no blank line separating the text from its signatures")
    body = note[: split + 1]
    Checkpoint.parse(body)
    return body


def encode_entry(note: bytes, token: bytes) -> bytes:
    """The tokens-file line for ``token`` over the checkpoint ``note`` (newline included)."""
    entry = {"checkpoint": note.decode(), "token": base64.b64encode(token).decode()}
    return json.dumps(entry, sort_keys=True, ensure_ascii=False).encode() + b"\n"


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """The complete lines of a tokens file (newline stripped) and its torn tail (b"" if none)."""
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")[:-1]
    return lines, data[end:]


def parse_entry(line: bytes) -> StampEntry:
    """Parse one line of the tokens file strictly; TimestampError("mismatch") says what is wrong."""
    if len(line) > MAX_ENTRY_BYTES:
        raise TimestampError("mismatch", f"entry is {len(line)} bytes, over {MAX_ENTRY_BYTES}")
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise TimestampError("mismatch", f"entry is not JSON: {exc}") from None
    if not isinstance(entry, dict) or set(entry) != {"checkpoint", "token"}:
        keys = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise TimestampError(
            "mismatch", f"entry must be an object with checkpoint and token, got {keys}"
        )
    note, token = entry["checkpoint"], entry["token"]
    if not isinstance(note, str) or not isinstance(token, str):
        raise TimestampError("mismatch", "entry's checkpoint and token must be strings")
    try:
        der = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        raise TimestampError("mismatch", f"token is not base64: {token[:40]!r}") from None
    return StampEntry(note.encode(), der)


def load_trust_roots(pem: bytes, source: str) -> TrustRoots:
    """The certificates of a PEM file: self-signed ones are roots, the others intermediates.

    ValueError naming ``source`` if it holds no certificate or no self-signed one.
    """
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise ValueError(f"{source}: not a PEM file of certificates ({exc})") from None
    roots = tuple(c for c in certificates if _issued_by(c, c))
    if not roots:
        raise ValueError(f"{source}: no self-signed (root) certificate among its certificates")
    return TrustRoots(roots, tuple(c for c in certificates if c not in roots), source)


def check_token(
    token: bytes, body: bytes, trust: TrustRoots, *, nonce: int | None = None
) -> StampInfo:
    """Check that ``token`` is a trusted TSA's stamp over checkpoint ``body``; what it says.

    ``nonce``: the one sent in the request, when checking a fresh response. Raises
    TimestampError (see its kinds), NoteError if ``body`` is not a checkpoint body, and
    ModuleNotFoundError without ``rfc3161-client``.
    """
    from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

    checkpoint = Checkpoint.parse(body)
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        raise TimestampError("mismatch", f"token is not a DER TimeStampResp: {exc}") from None
    if response.status != _GRANTED:
        texts = "; ".join(response.status_string) or "no status text"
        raise TimestampError(
            "mismatch", f"the TSA did not grant the token: status {response.status} ({texts})"
        )
    info = response.tst_info
    algorithm = info.message_imprint.hash_algorithm
    if algorithm != _SHA256_OID:
        raise TimestampError(
            "mismatch", f"token imprint uses {algorithm.dotted_string}, not SHA-256"
        )
    stamped, expected = info.message_imprint.message, imprint(body)
    if stamped != expected:
        raise TimestampError(
            "mismatch",
            f"token is over SHA-256 {stamped.hex()[:16]}..., not this checkpoint's "
            f"{expected.hex()[:16]}... (size {checkpoint.size})",
        )
    if nonce is not None and info.nonce != nonce:
        raise TimestampError("mismatch", f"token nonce {info.nonce} is not the request's {nonce}")
    signer = _signer_certificate(response)
    _check_time_stamping(signer)
    if not _chains_to(signer, trust):
        raise TimestampError(
            "untrusted",
            f"signed by {signer.subject.rfc4514_string()!r} (issuer "
            f"{signer.issuer.rfc4514_string()!r}), not under a trusted TSA root",
        )
    builder = VerifierBuilder()
    for root in trust.roots:
        builder = builder.add_root_certificate(root)
    for intermediate in trust.intermediates:
        builder = builder.add_intermediate_certificate(intermediate)
    try:
        builder.build().verify(response, expected)
    except VerificationError as exc:
        # The signer chains to a root, so what fails is the token's own signature or the
        # certificates' validity at genTime.
        raise TimestampError("mismatch", f"token signature does not verify: {exc}") from None
    accuracy = info.accuracy
    return StampInfo(
        checkpoint=checkpoint,
        gen_time=info.gen_time,
        accuracy=timedelta()
        if accuracy is None
        else timedelta(
            seconds=accuracy.seconds or 0,
            milliseconds=accuracy.millis or 0,
            microseconds=accuracy.micros or 0,
        ),
        serial=info.serial_number,
        tsa=signer.subject.rfc4514_string(),
        policy=info.policy.dotted_string,
    )


def check_order(stamps: Sequence[StampInfo]) -> tuple[StampInfo, StampInfo] | None:
    """The first pair (earlier, later) whose genTimes run against the log's order, else None.

    Tokens are obtained in tree order (never for a checkpoint smaller than one already
    stamped), so a larger checkpoint cannot carry a genTime before a smaller one's, beyond the
    two tokens' accuracies. ``later`` is the first offending stamp by size, ``earlier`` the stamp
    of a smaller checkpoint with the latest genTime before it.
    """
    newest: StampInfo | None = None
    for stamp in sorted(stamps, key=lambda s: s.checkpoint.size):
        if newest is not None and (
            stamp.gen_time + stamp.accuracy + newest.accuracy < newest.gen_time
        ):
            return newest, stamp
        if newest is None or stamp.gen_time > newest.gen_time:
            newest = stamp
    return None


def check_entries(
    lines: Sequence[bytes], verifier: NoteVerifier, origin: str, trust: TrustRoots
) -> tuple[list[tuple[int, StampInfo]], EntryProblem | None]:
    """Check every entry's note (the log's signature and origin) and token, then their order.

    Returns the entries that checked out, as (line, what the token says), and the first
    problem: an unreadable entry, a moved or altered token (``timestamp_mismatch``), a signer
    outside the roots (``timestamp_untrusted``), a checkpoint the log's key did not sign
    (``bad_signature``), genTimes against the log's order (``timestamp_order``). Whether the log
    still has each checkpoint is the caller's to check. ModuleNotFoundError without the
    ``timestamps`` extra.
    """
    stamps: list[tuple[int, StampInfo]] = []
    problem: EntryProblem | None = None
    for index, line in enumerate(lines):
        try:
            entry = parse_entry(line)
            body = verifier.verify(entry.note)
            checkpoint = Checkpoint.parse(body)
            if checkpoint.origin != origin:
                raise NoteError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
            stamps.append((index, check_token(entry.token, body, trust)))
        except TimestampError as exc:
            kind: EntryKind = (
                "timestamp_untrusted" if exc.kind == "untrusted" else "timestamp_mismatch"
            )
            problem = problem or EntryProblem(index, kind, str(exc))
        except NoteError as exc:
            problem = problem or EntryProblem(index, "bad_signature", f"checkpoint: {exc}")
    if problem is None:
        by_info = {id(info): index for index, info in stamps}
        pair = check_order([info for _, info in stamps])
        if pair is not None:
            earlier, later = pair
            problem = EntryProblem(
                by_info[id(later)],
                "timestamp_order",
                f"checkpoint {later.checkpoint.size} was stamped at {rfc3339(later.gen_time)}, "
                f"before checkpoint {earlier.checkpoint.size} (stamped at "
                f"{rfc3339(earlier.gen_time)}): tokens were not obtained in the log's order",
            )
    return stamps, problem


def summarize(stamps: Sequence[StampInfo], tokens: int, trust: str) -> TimestampSummary:
    """The summary of ``stamps`` (tokens that checked out) out of ``tokens`` entries."""
    summary = TimestampSummary(tokens, len(stamps), trust)
    summary.tsa = sorted({s.tsa for s in stamps})
    if stamps:
        first = min(stamps, key=lambda s: s.checkpoint.size)
        last = max(stamps, key=lambda s: s.checkpoint.size)
        summary.first_size, summary.first_time = first.checkpoint.size, rfc3339(first.gen_time)
        summary.last_size, summary.last_time = last.checkpoint.size, rfc3339(last.gen_time)
    return summary


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with a Z, to the second (what a token's genTime gives)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _signer_certificate(response: TimeStampResponse) -> x509.Certificate:
    """The embedded certificate named by the token's (single) SignerInfo."""
    infos = list(response.signed_data.signer_infos)
    if len(infos) != 1:
        raise TimestampError("mismatch", f"token has {len(infos)} signers, not one")
    (info,) = infos
    for der in response.signed_data.certificates:
        certificate = x509.load_der_x509_certificate(der)
        if certificate.issuer == info.issuer and certificate.serial_number == info.serial_number:
            return certificate
    raise TimestampError(
        "untrusted", "token carries no signer certificate (it must be requested with certReq)"
    )


def _check_time_stamping(certificate: x509.Certificate) -> None:
    """RFC 3161 2.3: the TSA's certificate has exactly one, critical, EKU: timeStamping."""
    subject = certificate.subject.rfc4514_string()
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TimestampError(
            "untrusted", f"signer {subject!r} has no extended key usage: not a TSA certificate"
        ) from None
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TimestampError(
            "untrusted",
            f"signer {subject!r} is not a time-stamping certificate (its extended key usage "
            "must be critical and timeStamping only)",
        )


@functools.lru_cache(maxsize=64)  # a log's tokens come from one or a few TSA certificates
def _chains_to(certificate: x509.Certificate, trust: TrustRoots) -> bool:
    """Whether issuer signatures lead from ``certificate`` to one of the trusted roots."""
    current = certificate
    for _ in range(_MAX_CHAIN):
        if current in trust.roots:
            return True
        issuers = [
            c
            for c in (*trust.roots, *trust.intermediates)
            if c != current and _issued_by(current, c)
        ]
        if not issuers:
            return False
        current = issuers[0]
    return False


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    if certificate.issuer != issuer.subject:
        return False
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
