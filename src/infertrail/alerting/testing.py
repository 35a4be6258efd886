"""Test helpers for code that uses the alert engine: a dispatch that records deliveries."""

from __future__ import annotations

import threading

from infertrail.alerting.transitions import Delivery, SettledCallback, Transition


class RecordingDispatch:
    """A ``Dispatch`` that keeps every delivery and settles it at once as delivered.

    With ``settle=False`` deliveries stay unsettled (as if the process died before sending),
    so they remain in the engine's outbox; ``settle_all`` settles them later.
    """

    def __init__(self, *, settle: bool = True) -> None:
        self.settle = settle
        self.deliveries: list[Delivery] = []
        self._pending: list[tuple[Delivery, SettledCallback]] = []
        self._lock = threading.Lock()

    def submit(self, delivery: Delivery, on_settled: SettledCallback) -> None:
        """Record ``delivery``; settle it now when ``settle`` is true."""
        with self._lock:
            self.deliveries.append(delivery)
            if not self.settle:
                self._pending.append((delivery, on_settled))
                return
        on_settled(delivery, True)

    def settle_all(self, delivered: bool = True) -> None:
        """Settle every delivery held back so far."""
        with self._lock:
            pending, self._pending = self._pending, []
        for delivery, on_settled in pending:
            on_settled(delivery, delivered)

    def transitions(self, *kinds: str) -> list[Transition]:
        """Delivered transitions (one per delivery), optionally only of the given kinds."""
        with self._lock:
            return [
                d.transition for d in self.deliveries if not kinds or d.transition.kind in kinds
            ]
