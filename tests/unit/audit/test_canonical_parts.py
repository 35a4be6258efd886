"""canonical_parts: a record encoded once around its seq, numbered by joining bytes."""

from __future__ import annotations

from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import canonical
from infertrail.audit.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    canonical_parts,
    canonicalize,
)
from tests.unit.audit.test_canonical import _json, _text

_records = st.dictionaries(_text.filter(lambda k: k != "seq"), _json, max_size=6)
_seqs = st.integers(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)


def number(parts: tuple[bytes, bytes], seq: int) -> bytes:
    head, tail = parts
    return head + b"%d" % seq + tail


@settings(max_examples=400, deadline=None)
@given(_records, _seqs)
def test_parts_joined_with_a_seq_are_the_canonical_record(record: dict[str, Any], seq: int) -> None:
    numbered = {**record, "seq": seq}
    assert number(canonical_parts(record, "seq"), seq) == canonicalize(numbered)
    assert number(canonical_parts(record, "seq"), seq) == rfc8785.dumps(numbered)


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"a": 1, "z": 2},  # seq between them
        {"seq2": 1, "sep": 2, "s": 3},  # keys sharing a prefix with seq
        {"\U0001f600": 1, "\ue000": 2},  # astral key: the exact path sorts by UTF-16
        {"text": "\x00 NUL and \\u0000 in text", "seq_not": "\x00"},
        {"latency": 5.0, "tiny": 1e-9, "zero": -0.0},  # floats the fast path normalises
    ],
)
def test_parts_edge_records(record: dict[str, Any]) -> None:
    for seq in (0, 7, MAX_SAFE_INTEGER):
        assert number(canonical_parts(record, "seq"), seq) == rfc8785.dumps({**record, "seq": seq})


def test_record_is_not_modified() -> None:
    record = {"a": 1.0, "b": [2.0, {"c": -0.0}]}
    snapshot = repr(record)
    canonical_parts(record, "seq")
    assert repr(record) == snapshot and "seq" not in record


def test_exact_path_gives_the_same_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    record = {"score": 0.5, "n": 3, "nested": {"x": [1.0, "y"]}}
    fast = canonical_parts(record, "seq")

    def not_fast(obj: Any) -> Any:
        raise canonical._NotFast

    monkeypatch.setattr(canonical, "_fast_dict", not_fast)
    assert canonical_parts(record, "seq") == fast


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ({"score": float("nan")}, r"not finite.* at \$\.score"),
        ({"big": 2**60}, r"\$\.big"),
        ({1: "x"}, "not a str"),
        ({"when": object()}, r"builtins\.object has no JSON form.* at \$\.when"),
        ({"frag": __import__("orjson").Fragment(b"\x00")}, r"orjson\.Fragment"),
    ],
)
def test_bad_records_raise_as_canonicalize_does(record: dict[Any, Any], match: str) -> None:
    with pytest.raises(CanonicalizationError, match=match):
        canonical_parts(record, "seq")


def test_argument_errors() -> None:
    with pytest.raises(TypeError, match="needs a dict, got list"):
        canonical_parts([1], "seq")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already has the member 'seq'"):
        canonical_parts({"seq": 1}, "seq")
