"""telemetry/redaction.py: what HTTP telemetry may show of a query string and of an exception."""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from infertrail.telemetry import conventions as c
from infertrail.telemetry.redaction import (
    REDACTED,
    QueryRedaction,
    exception_attributes,
    exception_type,
    is_private_path,
    redact_query,
    redact_status_description,
    redacted_stacktrace,
    with_query,
)

NAME_LIKE = re.compile(r"[A-Za-z_][A-Za-z_.\-\[\]]{0,63}")
names = st.from_regex(NAME_LIKE, fullmatch=True)
values = st.text(min_size=1, max_size=40)
pairs = st.lists(st.tuples(st.one_of(names, st.text(max_size=20)), values), max_size=8)


# -- query strings ----------------------------------------------------------------------------
def test_the_documented_form() -> None:
    query = "from=2026-07-01&to=2026-10-01&subject_id=applicant-0042&justification=DSAR+117"
    assert redact_query(query) == (
        "from=REDACTED&to=REDACTED&subject_id=REDACTED&justification=REDACTED"
    )
    assert redact_query(query, {"from", "to"}) == (
        "from=2026-07-01&to=2026-10-01&subject_id=REDACTED&justification=REDACTED"
    )


@pytest.mark.parametrize(
    ("query", "keep", "shown"),
    [
        ("", (), ""),
        ("a=1&&b=2&", (), "a=REDACTED&b=REDACTED"),
        ("applicant-0042=1", (), "REDACTED=REDACTED"),  # an id sent as a name
        ("alice%40example.com=x", (), "REDACTED=REDACTED"),
        ("alice", (), "REDACTED"),  # a bare token is a value as often as a flag
        ("debug", {"debug"}, "debug"),
        ("subject%5Fid=bob", (), "subject_id=REDACTED"),  # names compared decoded
        ("model=a%26b", {"model"}, "model=a%26b"),  # a kept value is written as sent
        ("x=1&x=2", {"x"}, "x=1&x=2"),
        ("v2=1", {"v2"}, "v2=1"),  # allow-listed: kept though it has a digit
        ("limit=", (), "limit=REDACTED"),
        (b"name=%ff%fe\xff", (), "name=REDACTED"),  # bytes, not UTF-8
    ],
)
def test_query_cases(query: str | bytes, keep: set[str], shown: str) -> None:
    assert redact_query(query, keep) == shown


def test_a_decoded_separator_in_a_value_cannot_pass_for_a_kept_parameter() -> None:
    # Percent-decoded, "a%26model%3Dalice" reads "a&model=alice": the raw query keeps it one value.
    assert redact_query("note=a%26model%3Dalice", {"model"}) == "note=REDACTED"


@given(pairs)
def test_with_nothing_kept_no_value_survives(items: list[tuple[str, str]]) -> None:
    shown = redact_query(urlencode(items))
    for part in shown.split("&") if shown else []:
        name, has_value, value = part.partition("=")
        assert name == REDACTED or NAME_LIKE.fullmatch(name), part
        assert not has_value or value == REDACTED, part


@given(pairs, st.sets(names, max_size=3))
@example([("subject_id", "applicant-0042"), ("model", "credit")], {"model"})
def test_only_kept_parameters_keep_their_values(
    items: list[tuple[str, str]], keep: set[str]
) -> None:
    expected = [
        f"{name}={quote_plus(value)}"
        if name in keep
        else f"{name if NAME_LIKE.fullmatch(name) else REDACTED}={REDACTED}"
        for name, value in items
    ]
    assert redact_query(urlencode(items), keep) == "&".join(expected)


@given(pairs)
def test_redaction_is_idempotent_and_keeps_every_parameter(
    items: list[tuple[str, str]],
) -> None:
    once = redact_query(urlencode(items))
    assert redact_query(once) == once
    assert (once.split("&") if once else []) == [p for p in once.split("&") if p]
    assert len(once.split("&") if once else []) == len(items)


@given(st.text(min_size=8, max_size=40))
def test_a_raw_id_anywhere_in_a_query_is_gone(raw_id: str) -> None:
    assume(not NAME_LIKE.fullmatch(raw_id))
    for query in (
        urlencode({"subject_id": raw_id}),
        urlencode({raw_id: "1"}),
        quote(raw_id, safe=""),
        urlencode({"from": "2026-01-01", "subject_id": raw_id, "limit": 10}),
    ):
        shown = redact_query(query)
        # What is left is names and REDACTED; an id that is part of those is no leak.
        assume(raw_id not in "from=REDACTED&subject_id=REDACTED&limit=REDACTED")
        assert raw_id not in shown, query
        assert quote(raw_id, safe="") not in shown, query


@pytest.mark.parametrize(
    "path",
    [
        "/v1/audit/records",
        "/v1/audit/erasure",
        "/v1/AUDIT/records",
        "/api/privacy/requests",
        "/users/erase",
        "/v1/subjects/x/decisions",
        "/gdpr/dsar",
        "/v1/%61udit/records",
    ],
)
def test_private_routes(path: str) -> None:
    assert is_private_path(path)


@pytest.mark.parametrize("path", ["/v1/sentiment", "/v1/credit/score", "/v1/outcomes", "/"])
def test_other_routes(path: str) -> None:
    assert not is_private_path(path)


@given(st.text(max_size=30), st.sets(names, min_size=1, max_size=3))
def test_the_allow_list_is_off_on_private_routes(suffix: str, keep: set[str]) -> None:
    query = urlencode({name: "kept-value" for name in keep})
    redaction = QueryRedaction(frozenset(keep))
    assert "kept-value" not in redaction(f"/v1/audit/{suffix}", query)
    assert "kept-value" in redaction("/v1/outcomes/performance", query)


@pytest.mark.parametrize(
    ("url", "query", "shown"),
    [
        ("http://h/v1/audit/records?subject_id=x", "subject_id=REDACTED",
         "http://h/v1/audit/records?subject_id=REDACTED"),
        ("/p?a=1?b", "a=REDACTED", "/p?a=REDACTED"),
        ("/p?a", "", "/p"),
        ("/p", "a=REDACTED", "/p"),
    ],
)  # fmt: skip
def test_with_query(url: str, query: str, shown: str) -> None:
    assert with_query(url, query) == shown


# -- exceptions -------------------------------------------------------------------------------
class LookupFailed(Exception):
    pass


def _raise_chained(marker: str) -> BaseException:
    try:
        try:
            {}[marker]
        except KeyError as exc:
            raise LookupFailed(f"no subject {marker}") from exc
    except LookupFailed:
        try:
            raise ValueError(f"while handling {marker}")
        except ValueError as final:
            return final
    raise AssertionError("unreachable")


@given(st.text(min_size=1, max_size=30))
def test_no_exception_message_survives(text: str) -> None:
    marker = f"\u2603{text}"  # a snowman: in no file name, frame or fixed text
    exc = _raise_chained(marker)
    attrs = exception_attributes(exc, escaped=True)
    assert all(marker not in value and "\u2603" not in value for value in attrs.values())
    assert attrs[c.EXCEPTION_MESSAGE] == REDACTED
    assert attrs[c.EXCEPTION_ESCAPED] == "True"


def test_the_stacktrace_keeps_types_frames_and_chain() -> None:
    exc = _raise_chained("applicant-0042")
    trace = redacted_stacktrace(exc)
    assert exception_type(exc) == "ValueError"
    lines = trace.splitlines()
    assert lines.count("Traceback (most recent call last):") == 3
    assert f"{__name__}.LookupFailed: REDACTED" in lines
    assert "KeyError: REDACTED" in lines and lines[-1] == "ValueError: REDACTED"
    assert "The above exception was the direct cause of the following exception:" in lines
    assert "During handling of the above exception, another exception occurred:" in lines
    assert trace.index("KeyError") < trace.index("LookupFailed") < trace.index("ValueError: R")
    assert "_raise_chained" in trace  # the frames are there
    assert "applicant-0042" not in trace


def test_a_cyclic_chain_ends() -> None:
    a, b = ValueError("a-secret"), ValueError("b-secret")
    a.__context__, b.__context__ = b, a
    trace = redacted_stacktrace(a)
    assert "secret" not in trace and trace.count("ValueError: REDACTED") == 2


@pytest.mark.parametrize(
    ("description", "shown"),
    [
        (None, None),
        ("", ""),
        ("ValueError", "ValueError"),
        ("KeyError: 'applicant-0042'", "KeyError: REDACTED"),
        ("pkg.mod.Error: subject alice", "pkg.mod.Error: REDACTED"),
        ("no subject alice", REDACTED),
        ("Non-integer HTTP status: abc", REDACTED),
    ],
)
def test_status_descriptions(description: str | None, shown: str | None) -> None:
    assert redact_status_description(description) == shown
