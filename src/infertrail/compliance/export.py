"""Streamed encodings of an export: one JSON document, or CSV with one row per record.

Both stream batch by batch, so memory stays bounded whatever the export's size. JSON carries the
checkpoint once at the top; CSV has no place for it, so the HTTP API sends it in the
``X-Audit-Checkpoint`` header (base64 of the note) and the CLI prints it to stderr.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from infertrail.compliance.engine import ROW_FIELDS
from infertrail.compliance.queries import Export

__all__ = ["CSV_COLUMNS", "FORMATS", "csv_chunks", "json_chunks", "row_csv_values"]

FORMATS = ("json", "csv")
#: CSV header: seq, the typed fields, then integrity data (the record text last: it is long).
CSV_COLUMNS: tuple[str, ...] = ("seq", *ROW_FIELDS, "leaf_hash", "inclusion_proof", "record")


def row_csv_values(d: dict[str, Any]) -> list[object]:
    """CSV cells (CSV_COLUMNS order) of a row's JSON form; the proof's hashes joined by spaces."""
    proof = d["inclusion_proof"]
    values: list[object] = [d[name] for name in ("seq", *ROW_FIELDS, "leaf_hash")]
    values.append("" if proof is None else " ".join(proof))
    values.append(d["record"])
    return values


def csv_chunks(export: Export, on_progress: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """The export as CSV (RFC 4180, header row first), one chunk per batch; ``on_progress`` is
    called with each batch's number of rows once it is encoded."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    yield buf.getvalue().encode()
    for batch in export.batches:
        buf.seek(0)
        buf.truncate()
        writer.writerows(row_csv_values(row.to_dict()) for row in batch)
        if on_progress is not None:
            on_progress(len(batch))
        yield buf.getvalue().encode()


def json_chunks(
    export: Export, on_progress: Callable[[int], None] | None = None
) -> Iterator[bytes]:
    """The export as one JSON object: checkpoint, filters, count, then the ``rows`` array;
    ``on_progress`` as for :func:`csv_chunks`."""
    head = {
        **export.checkpoint.to_dict(),
        "filters": export.filters.to_dict(),
        "subject": None if export.subject is None else export.subject.to_dict(),
        "count": export.count,
        "access_seq": export.access_seq,
    }
    # The head's closing brace is replaced by the rows array, streamed after it.
    yield orjson.dumps(head)[:-1] + b',"rows":['
    first = True
    for batch in export.batches:
        parts = b",".join(orjson.dumps(row.to_dict()) for row in batch)
        if on_progress is not None:
            on_progress(len(batch))
        if parts:
            yield parts if first else b"," + parts
            first = False
    yield b"]}"
