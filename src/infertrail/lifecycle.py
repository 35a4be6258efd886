"""Bounded shutdown: one deadline shared by every step, each step unable to overrun it.

A service stops under someone else's clock (``docker stop`` waits 10 s, Kubernetes 30 s, a
systemd unit its ``TimeoutStopSec``), and the steps that take longest are the ones nobody
controls: an OTLP collector or a webhook that never answers. So every close runs in a helper
thread that is waited for at most the time left; a step still running at the deadline is
abandoned (its thread is a daemon and dies with the process) and named in a warning.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_SHUTDOWN_S", "NETWORK_STEP_S", "Deadline", "repeat_until", "run_bounded"]

_log = logging.getLogger("infertrail.lifecycle")

#: Default budget of a whole shutdown, in seconds: well inside ``docker stop``'s 10 s.
DEFAULT_SHUTDOWN_S = 5.0
#: What a step that only talks to the network (exporting telemetry, delivering notifications)
#: may take of it: a dead endpoint costs this much, and a stop stays well under the budget.
NETWORK_STEP_S = 2.0


class Deadline:
    """A point in monotonic time that several steps count down to."""

    def __init__(self, timeout_s: float) -> None:
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0, got {timeout_s!r}")
        self._end = time.monotonic() + timeout_s

    def remaining(self) -> float:
        """Seconds left (0 once passed)."""
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        """True once the deadline has passed."""
        return time.monotonic() >= self._end

    def capped(self, max_s: float) -> Deadline:
        """A deadline no later than this one and at most ``max_s`` from now."""
        return Deadline(min(self.remaining(), max_s))


def run_bounded(what: str, step: Callable[[float], object], deadline: Deadline) -> bool:
    """Run ``step(seconds_left)`` and wait for it at most until ``deadline``.

    Returns True if it finished in time (whether it succeeded or raised: a failure is logged,
    never raised, so that one broken step does not stop the ones after it), False if it was
    abandoned still running.
    """
    if deadline.expired:
        _log.warning("shutdown: no time left for %s; skipped", what)
        return False
    failure: list[BaseException] = []

    def target() -> None:
        try:
            step(deadline.remaining())
        except BaseException as exc:  # reported below; a close must not kill shutdown
            failure.append(exc)

    worker = threading.Thread(target=target, name=f"infertrail-close-{what}", daemon=True)
    worker.start()
    worker.join(deadline.remaining())
    if worker.is_alive():
        _log.warning("shutdown: %s still running at the deadline; abandoned", what)
        return False
    if failure:
        _log.error("shutdown: %s failed", what, exc_info=failure[0])
    return True


def repeat_until(
    stop: threading.Event,
    interval_s: float,
    round_: Callable[[], object],
    log: logging.Logger,
    what: str,
) -> None:
    """A background task's loop: ``round_()`` now, then every ``interval_s`` until ``stop``.

    A round that raises is logged and the next one runs on time: a bug must not end the task.
    """
    while not stop.is_set():
        try:
            round_()
        except Exception:
            log.exception("%s: round failed", what)
        stop.wait(interval_s)
