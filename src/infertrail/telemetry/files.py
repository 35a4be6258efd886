"""OTLP-JSON lines file exporters: one ``Export*ServiceRequest`` per line, as OTLP/JSON says.

Spans and log records (one per inference: the hot volume) are encoded directly by
:mod:`infertrail.telemetry.otlp_json`; metrics (one export per interval) go through the protobuf
messages and protobuf's JSON mapping, with the differences OTLP/JSON requires: hex trace and span
ids, integer enums. The files are read back by ``infertrail trace`` and by any tool that reads
the Collector's file exporter format.

protobuf and the OTLP encoders are imported at the first metrics export, not with this module:
importing the telemetry setup without OTLP configured loads no protobuf.

Files rotate (:class:`RotationPolicy`): before a write that would take a file past its size, or
whose time falls in a later age window than the file's last write, the file is renamed
``<name>.<UTC time>.jsonl`` and a new one is started; rotated files are deleted oldest first to
keep the directory under a total. A write is one ``write`` of whole lines under the file's lock,
and rotation happens only between writes, so no line is ever split or lost by it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    MetricExporter,
    MetricExportResult,
    MetricsData,
)
from opentelemetry.sdk.metrics.view import Aggregation
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from infertrail.telemetry.otlp_json import logs_request, traces_request

if TYPE_CHECKING:
    from google.protobuf.message import Message

TRACES_FILE = "traces.jsonl"
METRICS_FILE = "metrics.jsonl"
LOGS_FILE = "logs.jsonl"
_SUFFIX = ".jsonl"
# <base>.<UTC time to the microsecond>[-n].jsonl; n only when two rotations share a microsecond.
_ROTATED = re.compile(r"^(?P<base>.+)\.(?P<stamp>\d{8}T\d{12}Z)(?:-(?P<n>\d+))?\.jsonl$")

_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids(node: Any) -> Any:
    """Rewrite base64 id fields (protobuf JSON mapping) to the hex form OTLP/JSON mandates."""
    if isinstance(node, dict):
        return {
            k: base64.b64decode(v).hex() if k in _ID_KEYS and isinstance(v, str) else _hex_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_hex_ids(v) for v in node]
    return node


def otlp_json_line(message: Message) -> str:
    """One OTLP/JSON line for an export request message."""
    from google.protobuf.json_format import MessageToDict

    as_dict = MessageToDict(message, use_integers_for_enums=True)
    return json.dumps(_hex_ids(as_dict), separators=(",", ":")) + "\n"


def _line(request: dict[str, Any]) -> str:
    return orjson.dumps(request).decode() + "\n"


def _stamp(at_s: float) -> str:
    """``20261207T145637123456Z``: sorts as the time it names."""
    seconds, micros = divmod(int(at_s * 1_000_000), 1_000_000)
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f"{micros:06d}Z"


def _rotated_key(path: Path) -> tuple[str, int, str] | None:
    """(stamp, n, name) of a rotated file, the order of rotation; None for any other file."""
    m = _ROTATED.match(path.name)
    if m is None:
        return None
    return m["stamp"], int(m["n"] or 0), path.name


def rotated_files(path: Path) -> list[Path]:
    """The rotated predecessors of telemetry file ``path``, oldest first."""
    base = path.name.removesuffix(_SUFFIX)
    found = []
    if path.parent.is_dir():
        for entry in path.parent.iterdir():
            m = _ROTATED.match(entry.name)
            if m is not None and m["base"] == base:
                found.append(entry)
    return sorted(found, key=lambda p: _rotated_key(p) or ("", 0, ""))


def telemetry_files(path: Path) -> list[Path]:
    """Every file holding lines of ``path``'s stream, oldest first: rotated ones, then it."""
    return [*rotated_files(path), path]


class RotationPolicy:
    """When telemetry files rotate, and how much of them a directory keeps.

    A file rotates before a write that would take it past ``max_bytes`` (a single write larger
    than that still goes whole into a fresh file), or whose time falls in a later window of
    ``max_age_s`` seconds (windows counted from the Unix epoch: 24 h gives UTC days) than the
    file's last write. After a rotation, rotated files in the directory are deleted oldest
    first until they fit in ``max_total_bytes`` minus room for every file being written (each
    up to ``max_bytes``), so the directory as a whole stays under ``max_total_bytes``.
    Thread-safe; one policy serves every file of a directory.
    """

    def __init__(
        self,
        max_bytes: int,
        max_age_s: float,
        max_total_bytes: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_bytes < 1 or not max_age_s > 0 or max_total_bytes < max_bytes:
            raise ValueError(
                f"rotation needs max_bytes >= 1, max_age_s > 0 and max_total_bytes >= max_bytes, "
                f"got {max_bytes}, {max_age_s}, {max_total_bytes}"
            )
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.max_total_bytes = max_total_bytes
        self.clock = clock
        self._lock = threading.Lock()
        self._active: set[Path] = set()

    @classmethod
    def of_megabytes(
        cls, max_mb: float, max_age_h: float, max_total_mb: float, **kwargs: Any
    ) -> RotationPolicy:
        """From the settings' units (megabytes of 2**20 bytes, hours)."""
        mb = 1 << 20
        return cls(int(max_mb * mb), max_age_h * 3600, int(max_total_mb * mb), **kwargs)

    def register(self, path: Path) -> None:
        """Count ``path`` as a file being written under this policy (its room is reserved)."""
        with self._lock:
            self._active.add(path)

    def due(self, size: int, incoming: int, last_write_s: float, now_s: float) -> bool:
        """Whether a file of ``size`` bytes, last written at ``last_write_s``, rotates before a
        write of ``incoming`` bytes at ``now_s``."""
        if size == 0:
            return False
        if size + incoming > self.max_bytes:
            return True
        return now_s // self.max_age_s > last_write_s // self.max_age_s

    def prune(self, directory: Path) -> list[Path]:
        """Delete the oldest rotated files of ``directory`` beyond the budget; returns them."""
        with self._lock:
            budget = self.max_total_bytes - len(self._active) * self.max_bytes
            rotated: list[tuple[tuple[str, int, str], Path, int]] = []
            for entry in directory.iterdir():
                key = _rotated_key(entry)
                if key is not None:
                    try:
                        rotated.append((key, entry, entry.stat().st_size))
                    except FileNotFoundError:
                        continue  # another process pruned it
            rotated.sort()
            total = sum(size for _, _, size in rotated)
            deleted = []
            for _, entry, size in rotated:
                if total <= budget:
                    break
                entry.unlink(missing_ok=True)
                total -= size
                deleted.append(entry)
            return deleted


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _JsonLinesFile:
    """Appends lines to a file through a descriptor kept open (``O_APPEND``), one lock.

    The directory is created on the first write. With a :class:`RotationPolicy`, the file is
    rotated (renamed) between writes when due, judged from the size and last write this writer
    tracks. At most every :data:`RECHECK_S` seconds the path is looked at again: a file another
    writer (another process on the same directory) rotated or removed is reopened, and the
    size and time of the file found there are taken. Between those checks the writer's lines
    may still go to the file the other writer renamed: they are kept, in the rotated file.
    """

    #: How often the path is re-checked against the open descriptor.
    RECHECK_S = 1.0

    def __init__(self, path: Path, rotation: RotationPolicy | None = None) -> None:
        self.path = path
        self._rotation = rotation
        self._lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._last_write_s = 0.0
        self._checked = -self.RECHECK_S
        if rotation is not None:
            rotation.register(path)

    def write(self, line: str | bytes) -> None:
        """Append ``line`` (whole lines, newline-terminated; bytes are UTF-8) in one write."""
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        with self._lock:
            now = time.monotonic()
            if self._fd < 0 or now - self._checked >= self.RECHECK_S:
                self._checked = now
                self._reopen_if_moved()
            rotation = self._rotation
            if rotation is not None:
                at = rotation.clock()
                if rotation.due(self._size, len(data), self._last_write_s, at):
                    self._rotate(rotation, at)
                self._last_write_s = at
            _write_all(self._fd, data)
            self._size += len(data)

    def close(self) -> None:
        """Close the descriptor (a later write opens the file again). Idempotent."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def _open(self) -> None:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            self._fd = os.open(self.path, flags, 0o666)
        except FileNotFoundError:  # the directory is made on the first write (or again)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o666)
        st = os.fstat(self._fd)
        self._size, self._last_write_s = st.st_size, st.st_mtime

    def _reopen_if_moved(self) -> None:
        if self._fd >= 0:
            try:
                here = self.path.stat()
            except FileNotFoundError:
                here = None
            mine = os.fstat(self._fd)
            if here is not None and (here.st_ino, here.st_dev) == (mine.st_ino, mine.st_dev):
                self._size, self._last_write_s = mine.st_size, mine.st_mtime
                return
            self._close()
        self._open()

    def _rotate(self, rotation: RotationPolicy, now: float) -> None:
        base = self.path.name.removesuffix(_SUFFIX)
        target = self.path.with_name(f"{base}.{_stamp(now)}{_SUFFIX}")
        n = 0
        while target.exists():
            n += 1
            target = self.path.with_name(f"{base}.{_stamp(now)}-{n}{_SUFFIX}")
        self._close()
        try:
            self.path.rename(target)
        except FileNotFoundError:
            pass  # another process rotated it first: write to the new file
        else:
            rotation.prune(self.path.parent)
        self._open()


class OtlpJsonSpanExporter(SpanExporter):
    """Writes spans as OTLP/JSON lines."""

    def __init__(self, path: Path, rotation: RotationPolicy | None = None) -> None:
        self._file = _JsonLinesFile(path, rotation)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._file.write(_line(traces_request(spans)))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()


class OtlpJsonLogExporter(LogRecordExporter):
    """Writes log records as OTLP/JSON lines (to ``path``, or to a file shared with others)."""

    def __init__(self, path: Path | _JsonLinesFile, rotation: RotationPolicy | None = None) -> None:
        self._file = path if isinstance(path, _JsonLinesFile) else _JsonLinesFile(path, rotation)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        self._file.write(_line(logs_request(batch)))
        return LogRecordExportResult.SUCCESS

    def shutdown(self) -> None:
        self._file.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


class OtlpJsonMetricExporter(MetricExporter):
    """Writes metric collections as OTLP/JSON lines (cumulative temporality, as Prometheus)."""

    def __init__(
        self,
        path: Path,
        preferred_temporality: dict[type, AggregationTemporality] | None = None,
        preferred_aggregation: dict[type, Aggregation] | None = None,
        rotation: RotationPolicy | None = None,
    ) -> None:
        super().__init__(preferred_temporality, preferred_aggregation)
        self._file = _JsonLinesFile(path, rotation)

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

        self._file.write(otlp_json_line(encode_metrics(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._file.close()
