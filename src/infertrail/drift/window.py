"""Windows of live inputs: a Monitor sink that samples events and runs drift off the hot path.

:class:`DriftMonitor` is registered with ``Monitor.add_sink`` and so runs on the Monitor's
background worker, where it must stay cheap: it samples the event (seeded), extracts the feature
row and copies it into a preallocated buffer. A window closes when it holds ``window_size`` rows
or is ``window_seconds`` old; the closed buffer goes to the drift monitor's own worker thread,
which runs the detector and hands the report to the listeners. Memory is bounded: a fixed pool
of buffers, and the last ``keep_reports`` reports.
"""

from __future__ import annotations

import collections
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from infertrail.drift.analysis import WindowAnalyzer, check_analyzers, run_analyzers
from infertrail.drift.detector import DriftDetector, DriftReport, DriftWindow, SliceReport
from infertrail.drift.profile import Profile
from infertrail.drift.rule import DriftConfig
from infertrail.drift.stats import FloatArray, IntArray
from infertrail.events import InferenceEvent, drift_inputs

_log = logging.getLogger("infertrail.drift")

ReportListener = Callable[[DriftReport], None]
#: Request attributes a window keeps per row, for slices (:mod:`infertrail.drift.slices`).
ATTRIBUTES = ("tenant", "endpoint", "team")


class Slicer(Protocol):
    """Splits a window into slices: slice key (``tenant=acme``) -> row indices."""

    def partition(self, window: DriftWindow) -> Mapping[str, IntArray]: ...


#: Fewest samples a window closed by time (or flushed) needs to be judged.
DEFAULT_MIN_SAMPLES = 30
#: Buffers: one filling, one waiting for the detector, one being judged.
POOL_SIZE = 3


class _Buffer:
    """Preallocated storage of one window (plus references to its raw inputs)."""

    def __init__(self, capacity: int, n_features: int, n_classes: int) -> None:
        self.rows: FloatArray = np.empty((capacity, n_features))
        self.labels: IntArray = np.empty(capacity, dtype=np.int64)
        self.confidences: FloatArray = np.empty(capacity)
        self.scores: FloatArray = np.empty(capacity)
        self.probabilities: FloatArray | None = (
            np.empty((capacity, n_classes)) if n_classes else None
        )
        self.has_probabilities = False
        self.inputs: list[Any] = []
        self.rejected: list[Any] = []
        self.attributes: dict[str, list[str | None]] = {k: [] for k in ATTRIBUTES}
        self.n = 0
        self.started_mono = 0.0
        self.started_at = 0.0

    @property
    def nbytes(self) -> int:
        arrays = (self.rows, self.labels, self.confidences, self.scores, self.probabilities)
        return sum(a.nbytes for a in arrays if a is not None)

    def reset(self) -> None:
        self.n = 0
        self.has_probabilities = False
        self.inputs.clear()
        self.rejected.clear()
        for values in self.attributes.values():
            values.clear()

    def window(self, closed_at: float) -> DriftWindow:
        n = self.n
        probabilities = self.probabilities
        return DriftWindow(
            self.rows[:n],
            self.labels[:n],
            self.confidences[:n],
            self.started_at,
            closed_at,
            scores=self.scores[:n],
            probabilities=probabilities[:n]
            if self.has_probabilities and probabilities is not None
            else None,
            inputs=tuple(self.inputs),
            rejected=tuple(self.rejected),
            attributes={k: tuple(v) for k, v in self.attributes.items()},
        )


@dataclass
class DriftMonitorStats:
    """Counters of what the drift monitor did with the events it was given."""

    events: int = 0
    other_model: int = 0
    not_ok: int = 0
    sampled: int = 0
    feature_errors: int = 0
    windows_closed: int = 0
    windows_dropped: int = 0
    windows_too_small: int = 0
    detector_errors: int = 0
    listener_errors: int = 0
    analyzer_errors: int = 0
    slices_too_small: int = 0


_STOP = object()


class DriftMonitor:
    """A Monitor sink that windows sampled inputs and reports drift on its own thread."""

    def __init__(
        self,
        profile: Profile,
        config: DriftConfig | None = None,
        *,
        window_size: int = 1000,
        window_seconds: float | None = None,
        sample_rate: float = 1.0,
        seed: int = 0,
        min_samples: int | None = None,
        keep_reports: int = 100,
        listeners: Iterable[ReportListener] = (),
        model_name: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        analyzers: Sequence[WindowAnalyzer] = (),
        slicer: Slicer | None = None,
        min_slice_samples: int | None = None,
    ) -> None:
        """``analyzers`` judge every window after the detector (their sections and signals go
        into the report); with a ``slicer``, every slice of at least ``min_slice_samples`` rows
        (default: ``min_samples``) is judged on its own too (``DriftReport.slices``)."""
        if window_size < 1:
            raise ValueError(f"window_size must be at least 1, got {window_size}")
        if window_seconds is not None and not window_seconds > 0:
            raise ValueError(f"window_seconds must be positive, got {window_seconds}")
        if not 0.0 < sample_rate <= 1.0:
            raise ValueError(f"sample_rate must lie in (0, 1], got {sample_rate}")
        if min_samples is None:
            min_samples = min(DEFAULT_MIN_SAMPLES, window_size)
        if not 1 <= min_samples <= window_size:
            raise ValueError(f"min_samples must be in 1..window_size, got {min_samples}")
        if keep_reports < 1:
            raise ValueError(f"keep_reports must be at least 1, got {keep_reports}")
        if min_slice_samples is None:
            min_slice_samples = min_samples
        if min_slice_samples < 1:
            raise ValueError(f"min_slice_samples must be at least 1, got {min_slice_samples}")
        self.profile = profile
        self.detector = DriftDetector(profile, config)
        self.analyzers = check_analyzers(analyzers)
        self.slicer = slicer
        self.min_slice_samples = min_slice_samples
        self._classes = (
            {c: i for i, c in enumerate(profile.prediction.categories)}
            if profile.prediction is not None
            else {}
        )
        self.model_name = profile.model_name if model_name is None else model_name
        self.window_size = window_size
        self.window_seconds = window_seconds
        self.sample_rate = sample_rate
        self.min_samples = min_samples
        self.stats = DriftMonitorStats()
        self._clock = clock
        self._rng = random.Random(seed)
        self._listeners: list[ReportListener] = list(listeners)
        self._reports: collections.deque[DriftReport] = collections.deque(maxlen=keep_reports)
        n_features = len(profile.columns)
        self._buffers = [
            _Buffer(window_size, n_features, len(self._classes)) for _ in range(POOL_SIZE)
        ]
        self._free = list(self._buffers[1:])
        self._current = self._buffers[0]
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._closed: queue.Queue[object] = queue.Queue()
        self._stopped = False
        self._worker = threading.Thread(target=self._run, name="infertrail-drift", daemon=True)
        self._worker.start()

    # -- the sink (Monitor's worker thread) --------------------------------------------------
    def __call__(self, ev: InferenceEvent) -> None:
        """Sample ``ev`` into the current window; closes the window when it is full or old."""
        self.stats.events += 1
        if self._stopped:
            return  # closed: no thread left to judge windows
        if self.model_name and ev.model.name != self.model_name:
            self.stats.other_model += 1
            return
        if ev.status != "ok" or ev.inputs is None:
            self.stats.not_ok += 1
            return
        if self.sample_rate < 1.0 and self._rng.random() >= self.sample_rate:
            return
        inputs = drift_inputs(ev)  # a generation's: its lengths and prompt text
        try:
            row = self.profile.features(inputs)
        except (ValueError, TypeError, OverflowError):  # float(10**400) overflows
            self.stats.feature_errors += 1
            with self._lock:  # for the data-quality checks: bounded like the window
                if len(self._current.rejected) < self.window_size:
                    self._current.rejected.append(inputs)
            return
        label = self.profile.label_code(ev.label)
        conf = math.nan if ev.confidence is None else ev.confidence
        score = math.nan if ev.score is None else ev.score
        with self._lock:
            buf = self._current
            now = self._clock()
            if buf.n == 0:
                buf.started_mono, buf.started_at = now, time.time()
            at = buf.n
            buf.rows[at] = row
            buf.labels[at] = label
            buf.confidences[at] = conf
            buf.scores[at] = score
            if buf.probabilities is not None:
                buf.has_probabilities |= self._probabilities(ev, buf.probabilities[at])
            buf.inputs.append(inputs)
            attributes = buf.attributes
            attributes["tenant"].append(ev.tenant)
            attributes["endpoint"].append(ev.endpoint)
            attributes["team"].append(ev.team)
            buf.n += 1
            self.stats.sampled += 1
            if buf.n >= self.window_size or self._expired(buf, now):
                self._close_locked()

    def _probabilities(self, ev: InferenceEvent, out: FloatArray) -> bool:
        """Fill ``out`` from ``ev.probabilities`` (label -> p) in the profile's label order."""
        given = ev.probabilities
        out.fill(math.nan)
        if not given:
            return False
        classes = self._classes
        for label, p in given.items():
            at = classes.get(str(label))
            if at is not None:
                out[at] = p
        return True

    def _expired(self, buf: _Buffer, now: float) -> bool:
        return self.window_seconds is not None and now - buf.started_mono >= self.window_seconds

    def _close_locked(self) -> None:
        buf = self._current
        if buf.n < self.min_samples:
            self.stats.windows_too_small += 1
            buf.reset()
            return
        if not self._free:
            # The detector is two windows behind: drop this one rather than block the sink.
            self.stats.windows_dropped += 1
            buf.reset()
            return
        self._current = self._free.pop()
        self._current.reset()
        self._pending += 1
        self.stats.windows_closed += 1
        self._closed.put((buf, time.time()))

    # -- the detector's thread ---------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                item = self._closed.get(timeout=self._wait_s())
            except queue.Empty:
                with self._lock:
                    if self._current.n and self._expired(self._current, self._clock()):
                        self._close_locked()
                continue
            if item is _STOP:
                return
            assert isinstance(item, tuple)
            buf: _Buffer = item[0]
            closed_at: float = item[1]
            report = None
            try:
                report = self._judge(buf.window(closed_at))
            except Exception:
                self.stats.detector_errors += 1
                _log.exception("drift detection failed for model %r", self.model_name)
            with self._lock:
                buf.reset()  # drops its references to the window's inputs
                self._free.append(buf)
            if report is not None:
                self._publish(report)
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def _judge(self, window: DriftWindow) -> DriftReport:
        """The detector's report on ``window``, with the analyzers' and the slices' verdicts."""
        report = self.detector.compare(window)
        results = run_analyzers(self.analyzers, window, self.model_name)
        self.stats.analyzer_errors += len(results.failed)
        slices = {}
        if self.slicer is not None:
            for key, index in self.slicer.partition(window).items():
                if len(index) < self.min_slice_samples:
                    self.stats.slices_too_small += 1
                    continue
                part = window.subset(index)
                judged = self.detector.compare(part)
                found = run_analyzers(self.analyzers, part, self.model_name)
                self.stats.analyzer_errors += len(found.failed)
                slices[key] = SliceReport(
                    n_samples=judged.n_samples,
                    n_drifted=judged.n_drifted,
                    share_drifted=judged.share_drifted,
                    dataset_drift=judged.dataset_drift,
                    drift_score=judged.drift_score,
                    drifted_features=[f.name for f in judged.features if f.drifted],
                    sections=found.sections,
                    signals=found.signals,
                )
        return replace(report, sections=results.sections, signals=results.signals, slices=slices)

    def _wait_s(self) -> float:
        if self.window_seconds is None:
            return 1.0
        with self._lock:
            if not self._current.n:
                return self.window_seconds
            left = self._current.started_mono + self.window_seconds - self._clock()
        return min(max(left, 0.01), self.window_seconds)

    def _publish(self, report: DriftReport) -> None:
        self._reports.append(report)
        for listener in list(self._listeners):
            try:
                listener(report)
            except Exception:
                self.stats.listener_errors += 1
                _log.exception("drift report listener %r failed", listener)

    # -- public controls ---------------------------------------------------------------------
    def add_listener(self, listener: ReportListener) -> None:
        """Call ``listener(report)`` for every report from now on (on the drift thread)."""
        self._listeners.append(listener)

    @property
    def reports(self) -> list[DriftReport]:
        """The last ``keep_reports`` reports, oldest first."""
        return list(self._reports)

    @property
    def latest(self) -> DriftReport | None:
        """The most recent report, if any window was judged yet."""
        return self._reports[-1] if self._reports else None

    @property
    def buffer_bytes(self) -> int:
        """Memory held by the window buffers: fixed at construction."""
        return sum(b.nbytes for b in self._buffers)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Close the current window (if it has ``min_samples``) and wait for every report.

        Returns False when the detector did not finish within ``timeout_s``.
        """
        with self._lock:
            if self._current.n >= self.min_samples:
                self._close_locked()
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush, then stop the drift thread. Idempotent."""
        if self._stopped:
            return
        self.flush(timeout_s)
        self._stopped = True
        self._closed.put(_STOP)
        self._worker.join(timeout_s)
