"""The audit log's witnesses: its checkpoints cosigned by parties outside the operator's reach.

A background thread (``infertrail-witnesses``), off the request path: at start, then every
``audit_witness_interval_s``, the log's newest signed checkpoint goes to every witness of
``audit_witnesses`` that has not cosigned it yet (c2sp.org/tlog-witness ``add-checkpoint``, in
parallel, each answer awaited at most ``audit_witness_timeout_s``), with a consistency proof
from the size that witness last cosigned. That size is kept beside the log
(``checkpoints/witnesses/<name>``); when the log does not know it, the witness's 409 answer
says it and the request goes again from there. A cosignature is kept only if it verifies under
the witness's configured key. Once a quorum (``audit_witness_quorum``, default a majority)
cosigned the checkpoint it counts as published: ``checkpoints/cosigned`` holds it with every
cosignature (:mod:`infertrail.audit.cosigned`).

A witness that refuses the checkpoint because it cosigned a larger tree (the log was rolled
back) or another one (it forked: 422, or 409 at the same size) is what this is for: an error in
the operator's log, counted, and shown in health until that witness cosigns again. Decisions
never wait for any of it: a witness that is down or slow delays publication, nothing else.

It shows (telemetry/conventions.py): ``infertrail.audit.witness.requests`` by witness and
result; each witness's cosigned size; ``infertrail.audit.witness.unpublished``, the records
signed but not yet under a published checkpoint (alert on it); and the ``audit_witnesses``
component of ``Runtime.health()``, which never makes the service unready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from infertrail.audit.checkpoint import Checkpoint, NoteError, split_note
from infertrail.audit.cosignature import (
    CosignatureVerifier,
    WitnessPolicy,
    add_signature_lines,
)
from infertrail.audit.cosigned import CosignedStore
from infertrail.audit.supervisor import SupervisedLog
from infertrail.audit.witness_protocol import (
    ADD_CHECKPOINT_PATH,
    MAX_ANSWER_SIZE,
    SIZE_CONTENT_TYPE,
    AddCheckpoint,
    ProtocolError,
    parse_cosignature_answer,
    parse_size_answer,
)
from infertrail.config import Settings
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, repeat_until
from infertrail.runtime.health import ComponentHealth
from infertrail.telemetry import conventions as c

__all__ = ["WitnessAnswer", "WitnessClient", "WitnessPublisher"]

_log = logging.getLogger("infertrail.audit")

COMPONENT = "audit_witnesses"
# A witness that keeps answering 409 with new sizes is misbehaving: give up after this many.
_MAX_TRIES = 3

Proof = Callable[[int, int], Sequence[bytes]]


@dataclass(frozen=True)
class WitnessAnswer:
    """What came of one checkpoint sent to one witness.

    ``result``: ``cosigned``; ``refused`` (the witness holds a larger or another tree: a
    rollback or fork of the log); ``rejected`` (400, 403, 404: it does not take this log or
    this request); ``unreachable`` (connection, timeout, 5xx); ``bad_response``.
    """

    result: str
    detail: str
    cosigned: bytes | None = None  # the log's note with this witness's cosignature line


class WitnessClient:
    """The log's view of one witness: where it is, its key, and what it last cosigned."""

    def __init__(
        self,
        url: str,
        verifier: CosignatureVerifier,
        timeout_s: float,
        *,
        cosigned: bytes | None = None,
    ) -> None:
        """``cosigned``: the checkpoint it last cosigned as kept (a hint: checked, else dropped)."""
        self.url = url.rstrip("/")
        self.verifier = verifier
        self._http = httpx.Client(timeout=timeout_s)
        self.size = 0
        self.cosigned: bytes | None = None  # the log's note and this witness's cosignature
        self.cosigned_text = b""  # its checkpoint text
        self.cosignature = b""  # its cosignature line
        if cosigned is not None:
            try:
                self._remember(cosigned)
            except NoteError:
                _log.warning("witnesses: the kept checkpoint of %s does not verify", self.name)

    @property
    def name(self) -> str:
        """The witness's key name."""
        return self.verifier.name

    def _remember(self, cosigned: bytes) -> None:
        line = self.verifier.open(cosigned).line
        text, _ = split_note(cosigned)
        self.size = Checkpoint.parse(text).size
        self.cosigned, self.cosigned_text, self.cosignature = cosigned, text, line

    def submit(self, note: bytes, checkpoint: Checkpoint, proof: Proof) -> WitnessAnswer:
        """Send the signed ``note`` (of ``checkpoint``); follow a 409 to the witness's size."""
        old = self.size
        for _ in range(_MAX_TRIES):
            if old > checkpoint.size:
                return WitnessAnswer(
                    "refused",
                    f"it cosigned size {old}, beyond this log's {checkpoint.size}: the log was "
                    "rolled back",
                )
            hashes = tuple(proof(old, checkpoint.size)) if 0 < old < checkpoint.size else ()
            body = AddCheckpoint(old, hashes, note).encode()
            try:
                status, content_type, answer = self._post(body)
            except httpx.HTTPError as exc:
                return WitnessAnswer("unreachable", type(exc).__name__)
            if status == 200:
                return self._cosigned(note, answer)
            if status == 409 and content_type == SIZE_CONTENT_TYPE:
                try:
                    size = parse_size_answer(answer)
                except ProtocolError as exc:
                    return WitnessAnswer("bad_response", f"409: {exc}")
                if size == old and old == checkpoint.size:
                    return WitnessAnswer(
                        "refused",
                        f"it cosigned another tree of size {size}: the log was forked",
                    )
                if size == old:
                    return WitnessAnswer("bad_response", f"409 naming the size sent, {size}")
                self.size = old = size
                continue
            return _refusal(status, answer, old, checkpoint.size)
        return WitnessAnswer("bad_response", f"{_MAX_TRIES} answers of 409 in a row")

    def _post(self, body: bytes) -> tuple[int, str, bytes]:
        with self._http.stream("POST", self.url + ADD_CHECKPOINT_PATH, content=body) as response:
            answer = b""
            for chunk in response.iter_bytes():
                answer += chunk
                if len(answer) > MAX_ANSWER_SIZE:
                    break
            return response.status_code, response.headers.get("content-type", ""), answer

    def _cosigned(self, note: bytes, answer: bytes) -> WitnessAnswer:
        try:
            combined = add_signature_lines(note, parse_cosignature_answer(answer))
            found = self.verifier.open(combined)
            cosigned = add_signature_lines(note, [found.line])
            self._remember(cosigned)
        except (ProtocolError, NoteError) as exc:
            return WitnessAnswer("bad_response", f"200 without its valid cosignature: {exc}")
        return WitnessAnswer("cosigned", f"size {self.size}", cosigned)

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()


def _refusal(status: int, answer: bytes, old: int, size: int) -> WitnessAnswer:
    said = _printable(answer)
    if status == 422:
        return WitnessAnswer(
            "refused",
            f"422: its tree of size {old} is not a prefix of this log's of size {size}: the log "
            f"was forked ({said})",
        )
    if status in (400, 403, 404):
        return WitnessAnswer("rejected", f"{status}: {said}")
    if status >= 500:
        return WitnessAnswer("unreachable", f"{status}")
    return WitnessAnswer("bad_response", f"{status}: {said}")


def _printable(answer: bytes) -> str:
    # The witness's own words, for the operator's log: one short line, nothing else.
    text = answer.decode("utf-8", "replace").strip().splitlines()
    line = text[0] if text else ""
    return "".join(ch if ch.isprintable() else "?" for ch in line[:200])


@dataclass
class _Status:
    """The last answer of one witness, and since when it has not been cosigning."""

    result: str = "none"
    detail: str = ""
    failing_since: float | None = None


class WitnessPublisher:
    """Sends the newest checkpoint to the witnesses every ``interval_s`` (module docstring).

    ``latest`` returns the log's newest signed checkpoint note, ``proof(old, new)`` a
    consistency proof between two of its sizes. :meth:`close` is bounded and must come before
    the log's.
    """

    def __init__(
        self,
        latest: Callable[[], bytes],
        proof: Proof,
        clients: Sequence[WitnessClient],
        policy: WitnessPolicy,
        store: CosignedStore,
        interval_s: float,
        *,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"witness interval must be > 0 seconds, got {interval_s!r}")
        if {w.name for w in clients} != {w.name for w in policy.witnesses}:
            raise ValueError("the policy must name exactly the witnesses sent to")
        self.interval_s = interval_s
        self._latest = latest
        self._proof = proof
        self.clients = tuple(clients)
        self.policy = policy
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()  # the fields below: the thread writes, readers read
        self._status = {w.name: _Status() for w in self.clients}
        self.published_size = 0
        self._published_text = b""
        self._published_count = 0
        self._signed_size = 0  # the newest checkpoint's size as of the last round
        self._short: str | None = None  # why the newest checkpoint is not published, if not
        published = store.published()
        if published is not None:
            self._adopt_published(published)
        self._pool = ThreadPoolExecutor(len(self.clients), thread_name_prefix="infertrail-witness")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infertrail-witnesses")
        self._thread.daemon = True
        self._requests: Counter | None = None
        if meter is not None:
            self._requests = meter.create_counter(
                c.METRIC_AUDIT_WITNESS_REQUESTS,
                unit=c.UNIT_REQUEST,
                description="Checkpoints sent to a witness (add-checkpoint), by result.",
            )
            meter.create_observable_gauge(
                c.METRIC_AUDIT_WITNESS_COSIGNED_SIZE,
                callbacks=[self._observe_cosigned],
                unit=c.UNIT_RECORD,
                description="Size of the newest audit checkpoint each witness cosigned.",
            )
            meter.create_observable_gauge(
                c.METRIC_AUDIT_WITNESS_UNPUBLISHED,
                callbacks=[self._observe_unpublished],
                unit=c.UNIT_RECORD,
                description="Audit records signed but under no quorum-cosigned checkpoint yet.",
            )

    @classmethod
    def open(
        cls, settings: Settings, log: SupervisedLog, meter: Meter | None = None
    ) -> WitnessPublisher:
        """A publisher for the service's log from the settings (not started).

        ValueError naming the entry when a witness key is not a cosigner key or the quorum
        cannot be met.
        """
        verifiers = []
        for number, endpoint in enumerate(settings.audit_witnesses, start=1):
            try:
                verifiers.append(CosignatureVerifier.from_key(endpoint.key))
            except NoteError as exc:
                raise ValueError(
                    f"audit_witnesses entry {number} ({endpoint.url}): {exc}"
                ) from None
        policy = WitnessPolicy(
            tuple(verifiers), settings.audit_witness_quorum or len(verifiers) // 2 + 1
        )
        store = CosignedStore(log.log_dir)
        clients = [
            WitnessClient(
                endpoint.url,
                verifier,
                settings.audit_witness_timeout_s,
                cosigned=store.witness_note(verifier.name),
            )
            for endpoint, verifier in zip(settings.audit_witnesses, verifiers, strict=True)
        ]
        return cls(
            lambda: log.latest_checkpoint,
            log.consistency_proof,
            clients,
            policy,
            store,
            settings.audit_witness_interval_s,
            meter=meter,
        )

    def start(self) -> WitnessPublisher:
        """Start the thread (its first round is now); returns self."""
        self._thread.start()
        return self

    def publish(self) -> dict[str, WitnessAnswer]:
        """One round: the newest checkpoint to every witness that has not cosigned it.

        Returns each answer by witness name. Never raises for a witness's or the disk's
        failure: they are counted, logged and shown in health.
        """
        note = self._latest()
        try:
            text, _ = split_note(note)
            checkpoint = Checkpoint.parse(text)
        except NoteError:
            _log.exception("witnesses: the log's latest checkpoint does not parse")
            return {}
        with self._lock:
            self._signed_size = checkpoint.size
        if checkpoint.size == 0:
            return {}  # the empty tree commits to nothing worth witnessing
        due = [w for w in self.clients if w.cosigned_text != text]
        futures = {w.name: self._pool.submit(self._submit, w, note, checkpoint) for w in due}
        answers = {name: future.result() for name, future in futures.items()}
        for client in due:
            self._record(client, answers[client.name])
        self._settle(note, text, checkpoint)
        return answers

    def _submit(self, client: WitnessClient, note: bytes, checkpoint: Checkpoint) -> WitnessAnswer:
        try:
            return client.submit(note, checkpoint, self._proof)
        except Exception as exc:  # the log went down meanwhile (no proof), or a bug
            _log.debug("witnesses: %s not asked", client.name, exc_info=True)
            return WitnessAnswer("unreachable", f"not sent: {type(exc).__name__}")

    def _record(self, client: WitnessClient, answer: WitnessAnswer) -> None:
        if self._requests is not None:
            self._requests.add(
                1, {c.AUDIT_WITNESS_NAME: client.name, c.AUDIT_WITNESS_RESULT: answer.result}
            )
        if answer.cosigned is not None:
            try:
                self._store.write_witness(client.name, answer.cosigned)
            except OSError as exc:  # kept in memory; the next cosignature is written again
                _log.warning("witnesses: cannot keep %s's cosignature: %s", client.name, exc)
        with self._lock:
            status = self._status[client.name]
            was_failing = status.failing_since is not None
            status.result, status.detail = answer.result, answer.detail
            if answer.result == "cosigned":
                status.failing_since = None
            elif not was_failing:
                status.failing_since = self._clock()
        if answer.result == "refused":
            _log.error(
                "witnesses: %s refuses the audit checkpoint: %s. Check the log with "
                "`infertrail audit verify`; decisions go on.",
                client.name,
                answer.detail,
            )
        elif answer.result != "cosigned" and not was_failing:
            _log.warning(
                "witnesses: %s did not cosign (%s: %s); decisions go on, retrying every %g s",
                client.name,
                answer.result,
                answer.detail,
                self.interval_s,
            )
        elif answer.result == "cosigned" and was_failing:
            _log.info("witnesses: %s cosigns again", client.name)

    def _settle(self, note: bytes, text: bytes, checkpoint: Checkpoint) -> None:
        """Publish ``note`` with its cosignatures once a quorum cosigned it."""
        cosigners = [w for w in self.clients if w.cosigned_text == text]
        lines = [w.cosignature for w in cosigners]
        names = [w.name for w in cosigners]
        if not self.policy.satisfied(names):
            with self._lock:
                self._short = (
                    f"quorum not reached: {len(names)} of the {self.policy.quorum} needed "
                    f"cosigned size {checkpoint.size} (published: {self.published_size})"
                )
            return
        with self._lock:
            self._short = None
            fresh = text != self._published_text or len(lines) > self._published_count
        if not fresh:
            return
        published = add_signature_lines(note, lines)
        try:
            self._store.publish(published)
        except OSError as exc:
            _log.warning("witnesses: cannot keep the published checkpoint: %s", exc)
        with self._lock:
            self.published_size = checkpoint.size
            self._published_text, self._published_count = text, len(lines)

    def _adopt_published(self, note: bytes) -> None:
        try:
            names = self.policy.cosignatures(note)
            text, _ = split_note(note)
            size = Checkpoint.parse(text).size
        except NoteError:
            return
        if self.policy.satisfied(names):
            self.published_size, self._published_text = size, text
            self._published_count = len(names)

    def unpublished(self) -> int:
        """Records under the newest signed checkpoint but no published one (as of last round)."""
        with self._lock:
            return max(0, self._signed_size - self.published_size)

    def _observe_unpublished(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.unpublished())]

    def _observe_cosigned(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(w.size, {c.AUDIT_WITNESS_NAME: w.name}) for w in self.clients]

    def health(self) -> ComponentHealth:
        """``audit_witnesses``: ok while every witness cosigns the newest checkpoint.

        Never required for readiness: decisions do not wait for witnesses. The reason names
        witnesses by key name, never by URL (which may carry credentials).
        """
        now = self._clock()
        with self._lock:
            problems = [
                f"{name}: {s.result} for {now - s.failing_since:.0f} s ({s.detail})"
                for name, s in self._status.items()
                if s.failing_since is not None
            ]
            if self._short is not None:
                problems.insert(0, self._short)
        if not problems:
            return ComponentHealth(COMPONENT, True, required=False)
        return ComponentHealth(
            COMPONENT, False, "; ".join(problems) + "; decisions are not affected", required=False
        )

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop the thread, waiting at most ``timeout_s`` for a round in progress. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # abandoned (daemon threads), their connections too
                _log.warning("witnesses: a round still going after %.1f s", timeout_s)
                return
        self._pool.shutdown(wait=False, cancel_futures=True)
        for client in self.clients:
            client.close()

    def _loop(self) -> None:
        repeat_until(self._stop, self.interval_s, self.publish, _log, "witnesses")
