"""Time windows (required, bounded), filter validation and cursors bound to their filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infertrail.compliance.filters import (
    QueryError,
    QueryFilters,
    TimeWindow,
    decode_cursor,
    encode_cursor,
    parse_instant,
    parse_window,
)

Q3 = TimeWindow(datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 10, 1, tzinfo=UTC))


def test_dates_and_rfc3339_times() -> None:
    assert parse_instant("2026-07-01", "from") == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_instant("2026-07-01T02:00:00+02:00", "from") == datetime(2026, 7, 1, tzinfo=UTC)
    assert parse_instant("2026-07-01T00:00:00.5Z", "from").microsecond == 500_000


@pytest.mark.parametrize(
    ("start", "end", "field", "message"),
    [
        (None, "2026-10-01", "from", "is required"),
        ("2026-07-01", None, "to", "is required"),
        ("", "2026-10-01", "from", "is required"),
        ("2026-07-01", "  ", "to", "is required"),
        ("yesterday", "2026-10-01", "from", "is not a date"),
        ("2026-13-01", "2026-10-01", "from", "is not a date"),
        ("2026-07-01T00:00:00", "2026-10-01", "from", "no time zone"),
        ("2026-10-01", "2026-07-01", "to", "is not after"),
        ("2026-07-01", "2026-07-01", "to", "is not after"),
        ("2025-01-01", "2026-10-01", "to", "the limit is 366 days"),
    ],
)
def test_bad_windows_name_the_field(
    start: str | None, end: str | None, field: str, message: str
) -> None:
    with pytest.raises(QueryError, match=message) as info:
        parse_window(start, end, 366)
    assert info.value.field == field


def test_window_limit_is_configurable() -> None:
    parse_window("2026-07-01", "2026-07-08", 7)
    with pytest.raises(QueryError, match="limit is 6 days"):
        parse_window("2026-07-01", "2026-07-08", 6)


@given(
    start=st.datetimes(datetime(2000, 1, 1), datetime(2090, 1, 1), timezones=st.just(UTC)),
    length=st.timedeltas(timedelta(microseconds=1), timedelta(days=366)),
)
def test_any_bounded_window_round_trips(start: datetime, length: timedelta) -> None:
    end = start + length
    window = parse_window(start.isoformat(), end.isoformat(), 366)
    assert (window.start, window.end) == (start, end)
    as_text = window.to_dict()
    assert parse_window(as_text["from"], as_text["to"], 366) == window


def test_unknown_event_type_lists_valid_ones() -> None:
    with pytest.raises(QueryError, match="access_query") as info:
        QueryFilters.create(Q3, event_type="decisions")
    assert info.value.field == "event_type"


@pytest.mark.parametrize("field", ["model_name", "model_version", "decision"])
def test_text_filters_are_bounded(field: str) -> None:
    with pytest.raises(QueryError, match="1 to 256") as info:
        QueryFilters.create(Q3, **{field: "x" * 257})
    assert info.value.field == field
    with pytest.raises(QueryError):
        QueryFilters.create(Q3, **{field: ""})


def test_equalities_map_to_lake_columns() -> None:
    p = "p-" + "1" * 32
    f = QueryFilters.create(Q3, pseudonym=p, decision="decline", event_type="inference")
    assert f.equalities() == {"subject": p, "decision": "decline", "event_type": "inference"}


filters_strategy = st.builds(
    QueryFilters.create,
    st.just(Q3),
    pseudonym=st.none() | st.from_regex(r"p-[0-9a-f]{32}", fullmatch=True),
    model_name=st.none()
    | st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=20),
    decision=st.none() | st.sampled_from(["approve", "decline"]),
)


@given(seq=st.integers(-1, 2**53), filters=filters_strategy)
def test_cursor_round_trip(seq: int, filters: QueryFilters) -> None:
    if seq < 0:
        return
    assert decode_cursor(encode_cursor(seq, filters), filters) == seq


@given(a=filters_strategy, b=filters_strategy)
def test_cursor_refused_for_other_filters(a: QueryFilters, b: QueryFilters) -> None:
    cursor = encode_cursor(7, a)
    if a.to_dict() == b.to_dict():
        assert decode_cursor(cursor, b) == 7
    else:
        with pytest.raises(QueryError, match="other filters"):
            decode_cursor(cursor, b)


@pytest.mark.parametrize("cursor", ["", "abc", "!!!", "YzEuLTEuMDAwMDAwMDAwMDAwMDAwMA", "c1.5.x"])
def test_garbage_cursor(cursor: str) -> None:
    with pytest.raises(QueryError, match="not a cursor") as info:
        decode_cursor(cursor, QueryFilters.create(Q3))
    assert info.value.field == "cursor"
