"""The runtime's retention task: :meth:`RetentionService.apply` at start, then every interval.

A background thread (``infertrail-retention``). A failed run is logged and retried at the next
interval: a dead task would shred nothing. It follows the runtime's close contract
(``flush(timeout_s) -> bool``, ``close(timeout_s)``, both bounded) and must be closed before
the audit log it records to.
"""

from __future__ import annotations

import logging
import threading

from infertrail.lifecycle import DEFAULT_SHUTDOWN_S
from infertrail.retention.service import RetentionService, ShredReport

__all__ = ["RetentionTask"]

_log = logging.getLogger("infertrail.retention")


class RetentionTask:
    """Applies retention every ``interval_s`` seconds in a background thread."""

    def __init__(self, service: RetentionService, interval_s: float) -> None:
        if not interval_s > 0:
            raise ValueError(f"retention interval must be > 0 seconds, got {interval_s}")
        self.service = service
        self.interval_s = interval_s
        self.runs = 0  # completed runs, failed ones included
        self.last: ShredReport | None = None  # the last successful run's report
        self._stop = threading.Event()
        self._idle = threading.Condition()  # _busy
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name="infertrail-retention")
        self._thread.daemon = True

    def start(self) -> RetentionTask:
        """Start the thread (its first run is now); returns self."""
        with self._idle:
            self._busy = True  # the first run is pending from now: flush() waits for it
        self._thread.start()
        return self

    def flush(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> bool:
        """Wait for the run in progress (or the first one, right after start); False if it is
        still running after ``timeout_s``."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout_s)

    def close(self, timeout_s: float = DEFAULT_SHUTDOWN_S) -> None:
        """Stop the thread, waiting at most ``timeout_s`` for a run in progress. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _log.warning("retention run still going after %.1f s; abandoned", timeout_s)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._idle:
                self._busy = True
            report = self._run()
            with self._idle:
                if report is not None:
                    self.last = report
                self._busy = False
                self.runs += 1
                self._idle.notify_all()
            self._stop.wait(self.interval_s)
        with self._idle:  # stopped before a pending run: nothing to wait for any more
            self._busy = False
            self._idle.notify_all()

    def _run(self) -> ShredReport | None:
        try:
            report = self.service.apply()
        except Exception:  # the next interval retries
            _log.exception("retention run failed")
            return None
        if report.receipt_seq is not None:
            _log.info(
                "retention: destroyed %d key(s) %s, shredded %d data key(s) and %d payload(s); "
                "recorded at seq %d",
                len(report.destroyed),
                [k.key_id for k in report.destroyed],
                report.shredded.data_keys,
                report.shredded.payloads,
                report.receipt_seq,
            )
        return report
