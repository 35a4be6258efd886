"""Streamed JSON and CSV exports: valid documents, every row, proofs that verify."""

from __future__ import annotations

import base64
import csv
import io
import json

from infertrail.audit import merkle
from infertrail.audit.checkpoint import open_checkpoint
from infertrail.compliance.export import CSV_COLUMNS, csv_chunks, json_chunks
from infertrail.compliance.queries import RecordsQuery

from .conftest import World

Q = RecordsQuery("2026-07-01", "2026-07-04")


def expected_seqs(world: World) -> list[int]:
    return [r["seq"] for r in world.written if "2026-07-01" <= r["ts"][:10] < "2026-07-04"]


def test_json_export_is_one_valid_document(world: World) -> None:
    export = world.service.export(world.caller("auditor"), Q)
    doc = json.loads(b"".join(json_chunks(export)))
    assert doc["count"] == len(doc["rows"]) == len(expected_seqs(world))
    assert [r["seq"] for r in doc["rows"]] == expected_seqs(world)
    cp = open_checkpoint(doc["checkpoint"].encode(), world.verifier)
    assert cp.size == doc["tree_size"]
    for row in doc["rows"]:
        proof = [base64.b64decode(h) for h in row["inclusion_proof"]]
        leaf = merkle.leaf_hash(row["record"].encode())
        assert merkle.verify_inclusion(row["seq"], cp.size, leaf, proof, cp.root)
    assert doc["access_seq"] == export.access_seq


def test_empty_json_export(world: World) -> None:
    q = RecordsQuery("2026-07-01", "2026-07-04", decision="no-such-decision")
    doc = json.loads(b"".join(json_chunks(world.service.export(world.caller("auditor"), q))))
    assert doc["rows"] == [] and doc["count"] == 0


def test_csv_export_rows_and_proofs(world: World) -> None:
    export = world.service.export(world.caller("auditor"), Q)
    cp = open_checkpoint(export.checkpoint.note, world.verifier)
    text = b"".join(csv_chunks(export)).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert [int(r["seq"]) for r in rows] == expected_seqs(world)
    for row in rows:
        record = row["record"].encode()
        assert json.loads(record)["seq"] == int(row["seq"])
        proof = [base64.b64decode(h) for h in row["inclusion_proof"].split()]
        leaf = merkle.leaf_hash(record)
        assert row["leaf_hash"] == leaf.hex()
        assert merkle.verify_inclusion(int(row["seq"]), cp.size, leaf, proof, cp.root)
        assert row["ts"].endswith("Z")


def test_csv_without_proofs_leaves_the_column_empty(world: World) -> None:
    export = world.service.export(world.caller("auditor"), Q, proofs=False)
    rows = list(csv.DictReader(io.StringIO(b"".join(csv_chunks(export)).decode())))
    assert rows and all(r["inclusion_proof"] == "" for r in rows)
