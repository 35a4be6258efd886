"""RFC 8785 canonical JSON: the RFC's own vectors, the independent rfc8785 package, bad input."""

from __future__ import annotations

import enum
import json
import math
import random
import struct
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from infertrail.audit import canonical
from infertrail.audit.canonical import MAX_SAFE_INTEGER, CanonicalizationError, canonicalize


def from_bits(hex_bits: str) -> float:
    return float(struct.unpack(">d", bytes.fromhex(hex_bits))[0])


# -- RFC 8785 vectors ------------------------------------------------------------------------

# RFC 8785 appendix B: IEEE 754 bit pattern -> ECMAScript Number::toString.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("hex_bits", "expected"), APPENDIX_B)
def test_appendix_b_numbers(hex_bits: str, expected: str) -> None:
    x = from_bits(hex_bits)
    assert canonicalize(x) == expected.encode()
    # The same number inside containers goes through the fast path's container loops.
    assert canonicalize([x]) == f"[{expected}]".encode()
    assert canonicalize({"n": x}) == f'{{"n":{expected}}}'.encode()
    assert canonical._exact([x]) == f"[{expected}]".encode()


@pytest.mark.parametrize("hex_bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_appendix_b_nan_and_infinity_are_rejected(hex_bits: str) -> None:
    with pytest.raises(CanonicalizationError, match="not finite"):
        canonicalize(from_bits(hex_bits))


def test_section_3_2_2_sample_object() -> None:
    # The RFC's input text, parsed as JSON, so the number literals are exactly the RFC's.
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    ).encode()
    value = json.loads(source)
    assert canonicalize(value) == expected
    assert canonical._exact(value) == expected
    # Section 3.2.4 gives the same result as UTF-8 bytes; spot-check the euro sign's encoding.
    assert b"\xe2\x82\xac$" in expected


def test_section_3_2_3_sorting_by_utf16_code_units() -> None:
    value = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canonicalize(value) == expected
    # Nested one level down, and with the astral character only in a value (no reordering).
    assert canonicalize({"a": [value]}) == b'{"a":[' + expected + b"]}"
    assert (
        canonicalize({"\ufb33": "\U0001f600", "a": 1}) == '{"a":1,"\ufb33":"\U0001f600"}'.encode()
    )


# -- numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (0.0, "0"),
        (1e21, "1e+21"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (1e-5, "0.00001"),
        (9.99e-6, "0.00000999"),
        (1e16, "10000000000000000"),
        (2.0**53, "9007199254740992"),
        (2.0**60, "1152921504606847000"),
        (5e-324, "5e-324"),
        (-1.5, "-1.5"),
        (123.456, "123.456"),
        (MAX_SAFE_INTEGER, "9007199254740991"),
        (-MAX_SAFE_INTEGER, "-9007199254740991"),
        (True, "true"),
        (None, "null"),
    ],
)
def test_numbers_and_literals(value: Any, expected: str) -> None:
    assert canonicalize(value) == expected.encode()
    assert canonicalize({"v": [value]}) == f'{{"v":[{expected}]}}'.encode()


def test_floats_around_the_fast_path_boundaries_match_rfc8785() -> None:
    # Walk successive doubles across every threshold where either orjson's or ECMAScript's
    # layout changes, plus a seeded random sample over the whole exponent range.
    rng = random.Random(8785)
    values: list[float] = []
    for edge in (1e-7, 1e-6, 1e-5, 1e-4, 1.0, 2.0**52, 2.0**53, 1e15, 1e16, 1e17, 1e21, 1e22):
        for start in (edge, -edge):
            x = start
            for _ in range(40):
                values.append(x)
                x = math.nextafter(x, 0.0)
            x = start
            for _ in range(40):
                values.append(x)
                x = math.nextafter(x, math.inf)
    values += [from_bits(f"{rng.getrandbits(63):016x}") for _ in range(3000)]
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-8, 17) for _ in range(3000)]
    values = [v for v in values if math.isfinite(v)]
    assert canonicalize(values) == rfc8785.dumps(values)
    for v in values[:2000]:
        assert canonicalize({"v": v}) == rfc8785.dumps({"v": v}), v


# -- against the independent rfc8785 package -------------------------------------------------

_edge_floats = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 1e21, 1e-7, 1e-6, 1e-5, 5e-324, -5e-324, 2.0**53, 1e16, 0.1]
)
_floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), _edge_floats)
_ints = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
_text = st.text(
    st.one_of(
        st.characters(codec="utf-8"),  # any code point but lone surrogates
        st.characters(min_codepoint=0, max_codepoint=0x1F),  # control characters
        st.characters(min_codepoint=0xE000, max_codepoint=0xF8FF),  # BMP private use
        st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF),  # astral
        st.sampled_from(['"', "\\", "/", "\x7f", "\u2028"]),
    ),
    max_size=8,
)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), _ints, _floats, _text),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.lists(children, max_size=5).map(tuple),
        st.dictionaries(_text, children, max_size=6),
    ),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(_json)
def test_matches_rfc8785_package(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonicalize(value) == expected
    assert canonical._exact(value) == expected


@settings(max_examples=300, deadline=None)
@given(_json)
def test_output_is_stable_under_a_json_round_trip(value: Any) -> None:
    once = canonicalize(value)
    # Parsed as floats, as an I-JSON reader would: 2**53 is a valid number but not a safe int.
    assert canonicalize(json.loads(once, parse_int=float)) == once


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_finite_float_matches_rfc8785(x: float) -> None:
    assert canonicalize(x) == rfc8785.dumps(x)
    assert canonicalize({"x": [x, -x]}) == rfc8785.dumps({"x": [x, -x]})


def test_common_values_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(obj: Any) -> bytes:
        raise AssertionError(f"fell back to the exact encoder for {obj!r}")

    monkeypatch.setattr(canonical, "_exact", no_fallback)
    value: Any = {
        "score": 0.87,
        "integral": 1.0,
        "tiny": 3.2e-9,
        "huge": 1e300,
        "big_integral": 2.0**60,
        "ints": [0, -7, MAX_SAFE_INTEGER],
        "text": 'na\u00efve \u20ac \U0001f600 \x00\x1f"\\/',
        "\u00e9t\u00e9": (None, True, False),
        "nested": {"values": {"f1": -0.03, "f2": 0.0}, "reason_codes": ["R1"]},
    }
    assert canonicalize(value) == rfc8785.dumps(value)


def test_input_is_not_modified() -> None:
    value = {"a": 1.0, "b": [2.0, {"c": -0.0}], "d": (3.0,)}
    snapshot = repr(value)
    assert canonicalize(value) == b'{"a":1,"b":[2,{"c":0}],"d":[3]}'
    assert repr(value) == snapshot


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Score(float):
    pass


def test_subclasses_of_json_types_encode_as_their_base_value() -> None:
    value = {"colour": Colour.RED, "level": Level.HIGH, "score": Score(0.5)}
    assert canonicalize(value) == b'{"colour":"red","level":3,"score":0.5}'


# -- rejected input --------------------------------------------------------------------------


def test_big_int_is_rejected_with_its_path() -> None:
    bad = {"explanation": {"values": [0.1, 0.2, 0.3, 2**53]}}
    with pytest.raises(CanonicalizationError) as info:
        canonicalize(bad)
    assert "9007199254740992" in str(info.value)
    assert "$.explanation.values[3]" in str(info.value)
    with pytest.raises(CanonicalizationError, match="bits"):
        canonicalize([-(10**5000)])


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_rejected_with_their_path(value: float) -> None:
    with pytest.raises(CanonicalizationError, match=r"not finite.*\$\.a\[1\]\.b"):
        canonicalize({"a": [0, {"b": value}]})


def test_non_string_key_is_rejected() -> None:
    with pytest.raises(CanonicalizationError, match=r"key 1 of type int.*at \$\.outer"):
        canonicalize({"outer": {1: "x"}})
    with pytest.raises(CanonicalizationError, match="key None"):
        canonicalize({None: 1})


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        (b"bytes", "builtins.bytes"),
        ({1, 2}, "builtins.set"),
        (object(), "builtins.object"),
        (__import__("decimal").Decimal("1.5"), "decimal.Decimal"),
        (__import__("uuid").UUID(int=1), "uuid.UUID"),
        (__import__("datetime").date(2026, 1, 1), "datetime.date"),
    ],
)
def test_unsupported_types_are_rejected_naming_type_and_path(value: Any, type_name: str) -> None:
    with pytest.raises(CanonicalizationError) as info:
        canonicalize({"weird key": [value]})
    assert type_name in str(info.value)
    assert '$["weird key"][0]' in str(info.value)


def test_lone_surrogates_are_rejected() -> None:
    with pytest.raises(CanonicalizationError, match=r"U\+D800.*\$\.s"):
        canonicalize({"s": "ok\ud800"})
    with pytest.raises(CanonicalizationError, match=r"U\+DFFF"):
        canonicalize({"k\udfff": 1})


def test_circular_and_absurdly_deep_values_are_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(CanonicalizationError, match="circular"):
        canonicalize(loop)


def test_deep_but_finite_nesting_is_encoded() -> None:
    value: Any = 1
    for _ in range(300):  # deeper than orjson's own limit: the exact path takes over
        value = [value]
    assert canonicalize(value) == b"[" * 300 + b"1" + b"]" * 300


def test_error_is_a_value_error() -> None:
    assert issubclass(CanonicalizationError, ValueError)
