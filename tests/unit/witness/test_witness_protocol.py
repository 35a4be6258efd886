"""The add-checkpoint request body and the witness's answers (tlog-witness), parsed strictly."""

from __future__ import annotations

import base64

import pytest

from infertrail.audit.witness_protocol import (
    MAX_ANSWER_SIZE,
    MAX_PROOF_LINES,
    MAX_REQUEST_SIZE,
    AddCheckpoint,
    ProtocolError,
    parse_cosignature_answer,
    parse_size_answer,
    size_answer,
)

NOTE = b"example.test/log\n5\n" + base64.b64encode(bytes(32)) + b"\n\n\xe2\x80\x94 k AAAA\n"
HASH = base64.b64encode(bytes(range(32)))


def test_round_trip() -> None:
    request = AddCheckpoint(3, (bytes(32), bytes(range(32))), NOTE)
    body = request.encode()
    assert body.startswith(b"old 3\n" + base64.b64encode(bytes(32)) + b"\n" + HASH + b"\n\n")
    assert AddCheckpoint.parse(body) == request
    assert AddCheckpoint.parse(b"old 0\n\n" + NOTE) == AddCheckpoint(0, (), NOTE)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"old 0\nexample.test/log\n", "no empty line"),
        (b"old 01\n\n" + NOTE, "'old <size>'"),
        (b"old -1\n\n" + NOTE, "'old <size>'"),
        (b"old  1\n\n" + NOTE, "'old <size>'"),
        (b"old 18446744073709551616\n\n" + NOTE, "'old <size>'"),
        (b"new 1\n\n" + NOTE, "'old <size>'"),
        (b"\n\n" + NOTE, "'old <size>'"),
        (b"old 1\nnot base64\n\n" + NOTE, "line 1 is not base64"),
        (b"old 1\n" + base64.b64encode(bytes(31)) + b"\n\n" + NOTE, "32-byte hash"),
        (b"old 1\n" + HASH[:-1] + b"0\n\n" + NOTE, "line 1 is not base64"),  # non-canonical
        (b"old 1\n" + (HASH + b"\n") * (MAX_PROOF_LINES + 1) + b"\n" + NOTE, "at most 63"),
        (b"old 1\n\n", "no checkpoint"),
        (b"old 1\n\n" + b"x" * MAX_REQUEST_SIZE, "over"),
    ],
)
def test_malformed_requests_are_refused(body: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        AddCheckpoint.parse(body)


def test_a_proof_of_63_hashes_is_accepted() -> None:
    body = b"old 1\n" + (HASH + b"\n") * MAX_PROOF_LINES + b"\n" + NOTE
    assert len(AddCheckpoint.parse(body).proof) == MAX_PROOF_LINES


def test_size_answers() -> None:
    assert size_answer(0) == b"0\n" and size_answer(42) == b"42\n"
    assert parse_size_answer(b"42\n") == 42
    for bad in (b"42", b"042\n", b"-1\n", b"4 2\n", b"\n", b"18446744073709551616\n"):
        with pytest.raises(ProtocolError):
            parse_size_answer(bad)


def test_cosignature_answers() -> None:
    line = "\N{EM DASH} w.test/1 ".encode() + base64.b64encode(bytes(76)) + b"\n"
    assert parse_cosignature_answer(line + line) == [line, line]
    for bad in (
        b"",
        line[:-1],  # no final newline
        line + b"\n" + line,  # an empty line would move the text/signature boundary
        b"cosigned\n",
        "\N{EM DASH} w.test/1 !!\n".encode(),
        "\N{EM DASH} w.test/1\n".encode(),
        line * (MAX_ANSWER_SIZE // len(line) + 1),
    ):
        with pytest.raises(ProtocolError):
            parse_cosignature_answer(bad)
