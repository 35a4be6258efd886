"""The service's time-stamping task: RFC 3161 tokens for the audit log's checkpoints.

A background thread (``infertrail-timestamps``), off the request path: at start, then every
``audit_tsa_interval_s``, when the log's newest signed checkpoint is larger than the newest one
with a token, it asks the TSA at ``audit_tsa_url`` for a token, checks it against
``audit_tsa_roots_file`` and appends it to ``checkpoints/timestamps.jsonl``
(:mod:`infertrail.audit.tsa`). Decisions never wait for it: a TSA that is down, slow (each try
is bounded by ``audit_tsa_timeout_s``) or answering garbage only delays the tokens, and the next
round tries again with the then newest checkpoint, which covers every earlier one. It shows:

- ``infertrail.audit.timestamp.tries`` (counter): every try, by result (``stamped``, or why not);
- ``infertrail.audit.timestamp.pending`` (gauge): seconds the newest checkpoint has waited for
  a token, 0 when every checkpoint seen has one: alert on it;
- :meth:`TimestampTask.health`: the ``audit_timestamps`` component of ``Runtime.health()``,
  not required for readiness (a TSA outage must not take the service out of its load
  balancer), its reason naming the kind of failure (never the TSA's URL, which may hold
  credentials).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation

from infertrail.audit.checkpoint import Checkpoint, NoteError
from infertrail.audit.supervisor import SupervisedLog
from infertrail.audit.timestamps import load_trust_roots, note_body
from infertrail.audit.tsa import StampOutcome, TimestampStore, TsaClient, TsaError, stamp_checkpoint
from infertrail.config import Settings
from infertrail.lifecycle import DEFAULT_SHUTDOWN_S, repeat_until
from infertrail.runtime.health import ComponentHealth
from infertrail.telemetry import conventions as c

__all__ = ["TimestampTask"]

_log = logging.getLogger("infertrail.audit")

COMPONENT = "audit_timestamps"


class TimestampTask:
    """Gets a token for the newest checkpoint at most every ``interval_s`` (module docstring).

    ``latest`` returns the log's newest signed checkpoint note. Follows the runtime's close
    contract: :meth:`close` is bounded, and must come before the log's.
    """

    def __init__(
        self,
        latest: Callable[[], bytes],
        client: TsaClient,
        store: TimestampStore,
        interval_s: float,
        *,
        meter: Meter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"timestamp interval must be > 0 seconds, got {interval_s!r}")
        self.interval_s = interval_s
        self._latest = latest
        self._client = client
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()  # the fields below: the thread writes, health() reads
        self._stamped = -1  # the largest checkpoint size known to have a token
        self._pending_since: float | None = None  # when a checkpoint without one was first seen
        self._failures = 0  # tries that failed in a row
        self._last_failure: tuple[str, float] | None = None  # (reason, when)
        self.stamps = 0  # tokens this task obtained
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="infertrail-timestamps")
        self._thread.daemon = True
        self._tries: Counter | None = None
        if meter is not None:
            self._tries = meter.create_counter(
                c.METRIC_AUDIT_TIMESTAMP_TRIES,
                unit=c.UNIT_REQUEST,
                description="Tries to get an RFC 3161 token for an audit checkpoint, by result.",
            )
            meter.create_observable_gauge(
                c.METRIC_AUDIT_TIMESTAMP_PENDING,
                callbacks=[self._observe_pending],
                unit=c.UNIT_SECONDS,
                description="Seconds the newest audit checkpoint has waited for its token.",
            )

    @classmethod
    def open(
        cls, settings: Settings, log: SupervisedLog, meter: Meter | None = None
    ) -> TimestampTask:
        """A task for the service's log from the settings (not started).

        ValueError naming the file when ``audit_tsa_roots_file`` is missing or holds no root.
        """
        url, roots_file = settings.audit_tsa_url, settings.audit_tsa_roots_file
        if url is None or roots_file is None:
            raise ValueError("timestamps need audit_tsa_url and audit_tsa_roots_file")
        try:
            pem = roots_file.read_bytes()
        except OSError as exc:
            raise ValueError(f"audit_tsa_roots_file {roots_file}: cannot read it ({exc})") from exc
        trust = load_trust_roots(pem, f"audit_tsa_roots_file {roots_file}")
        client = TsaClient(url, trust, settings.audit_tsa_timeout_s)
        return cls(
            lambda: log.latest_checkpoint,
            client,
            TimestampStore(log.log_dir),
            settings.audit_tsa_interval_s,
            meter=meter,
        )

    def start(self) -> TimestampTask:
        """Start the thread (its first round is now); returns self."""
        self._thread.start()
        return self

    def stamp(self) -> StampOutcome | None:
        """One round: a token for the newest checkpoint if it has none; None if none was due.

        Never raises for a TSA or storage failure: it is counted, logged and shown in health.
        """
        note = self._latest()
        try:
            size = Checkpoint.parse(note_body(note)).size
        except NoteError:
            _log.exception("timestamps: the log's latest checkpoint does not parse")
            return None
        now = self._clock()
        with self._lock:
            if size <= self._stamped or size == 0:
                self._pending_since = None
                return None
            if self._pending_since is None:
                self._pending_since = now
        try:
            outcome = stamp_checkpoint(note, self._client, self._store, wait=False)
        except TsaError as exc:
            self._failed(exc.reason, exc)
            return None
        except OSError as exc:
            self._failed("storage", exc)
            return None
        with self._lock:
            if outcome.newest is not None:
                self._stamped = max(self._stamped, outcome.newest)
            if self._stamped >= size:
                self._pending_since = None
            recovered, self._failures = self._failures, 0
            if outcome.info is not None:
                self.stamps += 1
        if outcome.info is not None:
            self._count("stamped")
            if recovered:
                _log.info("timestamps: the TSA answers again after %d failed tries", recovered)
        return outcome

    def _failed(self, reason: str, exc: BaseException) -> None:
        with self._lock:
            self._failures += 1
            self._last_failure = (reason, self._clock())
            first = self._failures == 1
        self._count(reason)
        # One warning per outage; every later try of it at debug level.
        _log.log(
            logging.WARNING if first else logging.DEBUG,
            "timestamps: no token for the newest checkpoint (%s): %s; decisions go on, "
            "retrying every %.0f s",
            reason,
            exc,
            self.interval_s,
        )

    def _count(self, result: str) -> None:
        if self._tries is not None:
            self._tries.add(1, {c.AUDIT_TIMESTAMP_RESULT: result})

    def pending_s(self) -> float:
        """Seconds the newest checkpoint has waited for a token (0: none is waiting)."""
        with self._lock:
            since = self._pending_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def _observe_pending(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.pending_s())]

    def health(self) -> ComponentHealth:
        """``audit_timestamps``: ok unless the last try failed; never required for readiness."""
        with self._lock:
            failures, last = self._failures, self._last_failure
        if failures == 0 or last is None:
            return ComponentHealth(COMPONENT, True, required=False)
        reason, when = last
        detail = (
            f"{failures} tries to get a token failed, the last {self._clock() - when:.0f} s ago "
            f"({reason}); the newest checkpoint has waited {self.pending_s():.0f} s for a "
            "token; decisions are not affected"
        )
        return ComponentHealth(COMPONENT, False, detail, required=False)

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop the thread, waiting at most ``timeout_s`` for a try in progress. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():  # abandoned (a daemon thread), its client with it
                _log.warning("timestamps: a TSA request still going after %.1f s", timeout_s)
                return
        self._client.close()

    def _loop(self) -> None:
        repeat_until(self._stop, self.interval_s, self.stamp, _log, "timestamps")
