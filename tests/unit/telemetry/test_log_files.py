"""The local log files share one batch processor; one failing file does not stop the other."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)

from infertrail.telemetry.setup import (
    ExportFailures,
    InferenceLogExporter,
    _FanOutLogExporter,
    _GuardedLogExporter,
)


class _Broken(LogRecordExporter):
    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        raise OSError("disk full")

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


def _records(bodies: list[object]) -> Sequence[ReadableLogRecord]:
    mem = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider = LoggerProvider()
    provider.add_log_record_processor(SimpleLogRecordProcessor(mem))
    logger = provider.get_logger("t")
    for body in bodies:
        logger.emit(body=body)  # type: ignore[call-overload]
    return mem.get_finished_logs()


def test_one_failing_file_is_counted_and_the_other_still_written(tmp_path: Path) -> None:
    failures = ExportFailures()
    path = tmp_path / "inference.log.jsonl"
    fan = _FanOutLogExporter(
        [
            _GuardedLogExporter(_Broken(), "file", failures),
            _GuardedLogExporter(InferenceLogExporter(path), "jsonl", failures),
        ]
    )
    result = fan.export(_records([{"event": "inference", "latency_ms": 0.5}, "not a map"]))
    assert result is LogRecordExportResult.FAILURE
    assert failures.counts == {("logs", "file"): 1}
    lines = path.read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"event": "inference", "latency_ms": 0.5}]


def test_flat_lines_stringify_what_json_cannot_hold(tmp_path: Path) -> None:
    path = tmp_path / "i.jsonl"
    InferenceLogExporter(path).export(_records([{"input": {"when": object}, "score": 0.25}]))
    [line] = path.read_text().splitlines()
    record = json.loads(line)
    assert record["score"] == 0.25
    assert record["input"]["when"].startswith("<class")
