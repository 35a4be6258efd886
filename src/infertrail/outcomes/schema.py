"""Outcome payloads: what ``POST /v1/outcomes`` and ``outcomes ingest`` accept, validated whole.

An outcome is ``{"request_id", "outcome", "ts"?, "kind"?}``: the request id of the prediction
it belongs to, a label (string, integer, boolean) or a numeric value (float), when it happened
(RFC 3339, default: when it is received) and what kind of outcome it is (default ``label``:
the ground truth of the prediction; others such as ``converted`` or ``revenue`` are business
KPIs). A batch is checked completely before anything is written, and every problem is
reported with its index and field.

Normal form: a string is a label; an integer is both a label (its decimal digits) and a value;
a boolean is the integer 1 or 0; a float is a value only. So ``true``, ``1`` and ``"1"`` are the
same label, and ``1.0`` is a number, not a label.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from infertrail.events import InvalidRequestId, validate_request_id

__all__ = [
    "DEFAULT_KIND",
    "KIND_PATTERN",
    "MAX_TIME_NS",
    "MIN_TIME_NS",
    "Outcome",
    "OutcomeIn",
    "OutcomeProblem",
    "OutcomeValidationError",
    "parse_outcomes",
    "rfc3339_ns",
]

DEFAULT_KIND = "label"
KIND_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_LABEL = 256
#: Times are stored as Unix nanoseconds in 64-bit integers: this is the range they can hold.
MIN_TIME_NS = -(2**63)
MAX_TIME_NS = 2**63 - 1
_MIN_TIME = "1677-09-21T00:12:43.145225Z"
_MAX_TIME = "2262-04-11T23:47:16.854775Z"
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?", re.ASCII)


class OutcomeIn(BaseModel):
    """One outcome as sent: the request id it belongs to, the outcome, when, what kind."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(description="Request id of the prediction (X-Request-ID).")
    outcome: (
        StrictBool
        | StrictInt
        | StrictFloat
        | Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL)]
    ) = Field(description="A label (string, integer, boolean) or a numeric value (float).")
    ts: str | None = Field(None, description="RFC 3339 time of the outcome; default: receipt.")
    kind: Annotated[str, StringConstraints(pattern=KIND_PATTERN)] = Field(
        DEFAULT_KIND, description="'label' (ground truth) or a business KPI name."
    )

    @field_validator("request_id")
    @classmethod
    def _request_id(cls, v: str) -> str:
        try:
            return validate_request_id(v)
        except InvalidRequestId:
            raise ValueError(
                "must be 1-128 characters of letters, digits, '.', '_', ':' or '-', starting "
                f"with a letter or digit, got {v[:64]!r}"
            ) from None

    @field_validator("outcome")
    @classmethod
    def _finite(cls, v: bool | int | float | str) -> bool | int | float | str:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"a numeric outcome must be finite, got {v}")
        return v

    @field_validator("ts")
    @classmethod
    def _rfc3339(cls, v: str | None) -> str | None:
        if v is not None:
            _time_ns(v)
        return v


_BATCH: TypeAdapter[list[OutcomeIn]] = TypeAdapter(list[OutcomeIn])


@dataclass(frozen=True, slots=True)
class Outcome:
    """An outcome in normal form: a label and/or a value, and its time in Unix nanoseconds."""

    request_id: str
    kind: str
    label: str | None
    value: float | None
    ts_ns: int

    def same_as(self, label: str | None, value: float | None) -> bool:
        """True when ``label``/``value`` (as stored) is this very outcome: a repeat, a no-op."""
        return self.label == label and self.value == value

    def as_json(self) -> dict[str, Any]:
        """The outcome as sent back in responses and kept in the audit record."""
        return {"label": self.label, "value": self.value}


@dataclass(frozen=True, slots=True)
class OutcomeProblem:
    """One thing wrong with a payload: the item's position, the field, what is wrong."""

    index: int | None
    field: str
    message: str

    def as_json(self) -> dict[str, Any]:
        """The problem as the API's ``detail`` lists it."""
        return {"index": self.index, "field": self.field, "message": self.message}

    def __str__(self) -> str:
        where = "" if self.index is None else f"[{self.index}]"
        return f"{where}.{self.field}: {self.message}" if where else f"{self.field}: {self.message}"


class OutcomeValidationError(ValueError):
    """A payload with problems; nothing of it was written."""

    def __init__(self, problems: Sequence[OutcomeProblem]) -> None:
        self.problems = list(problems)
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        super().__init__(f"{len(self.problems)} invalid outcome field(s): {shown}{more}")


def rfc3339_ns(v: str) -> int:
    """An RFC 3339 date-time (``2026-11-26T20:46:24Z``, an offset instead of Z, a fraction,
    a leap second) as Unix nanoseconds (microsecond precision), however far from 1970.

    ValueError names what is wrong: not this form (ISO 8601's other forms, a bare number or
    date included), no offset, or no such date.
    """
    shown = repr(v[:40]) if isinstance(v, str) else type(v).__name__
    if not isinstance(v, str) or (m := _RFC3339.fullmatch(v)) is None:
        if isinstance(v, str) and _LOCAL_TIME.fullmatch(v):
            raise ValueError(f"must carry a UTC offset (e.g. a trailing Z), got {shown}")
        raise ValueError(f"must be an RFC 3339 time such as 2026-11-26T20:46:24Z, got {shown}")
    date, hh, mm, ss, fraction, zone = m.groups()
    # A leap second (23:59:60) is the second after 23:59:59: datetime has no 60th second.
    leap = ss == "60"
    try:
        t = datetime.fromisoformat(
            f"{date}T{hh}:{mm}:{'59' if leap else ss}{(fraction or '')[:7]}"
            f"{'+00:00' if zone in 'Zz' else zone}"
        )
    except ValueError as exc:
        raise ValueError(f"is not a valid time ({exc}), got {shown}") from None
    return ((t - _EPOCH) // timedelta(microseconds=1) + (1_000_000 if leap else 0)) * 1000


def _time_ns(v: str) -> int:
    ns = rfc3339_ns(v)
    if not MIN_TIME_NS <= ns <= MAX_TIME_NS:
        raise ValueError(f"must be a time from {_MIN_TIME} to {_MAX_TIME}, got {v[:40]!r}")
    return ns


def normal_form(item: OutcomeIn, received_ns: int) -> Outcome:
    """The stored form of one validated outcome (see the module docstring for the rules)."""
    v = item.outcome
    if isinstance(v, bool):
        v = int(v)
    label: str | None
    value: float | None
    if isinstance(v, int):
        label, value = str(v), float(v)
    elif isinstance(v, float):
        label, value = None, v
    else:
        label, value = v, None
    ts_ns = received_ns if item.ts is None else _time_ns(item.ts)
    return Outcome(item.request_id, item.kind, label, value, ts_ns)


def parse_outcomes(data: Any, *, batch_max: int, received_ns: int | None = None) -> list[Outcome]:
    """Validate one outcome object or a list of them; OutcomeValidationError lists every problem."""
    items = [data] if isinstance(data, Mapping) else data
    single = isinstance(data, Mapping)
    if not isinstance(items, list):
        got = type(data).__name__
        raise _body_problem(f"must be an outcome object or a list of them, got {got}")
    if not items:
        raise _body_problem("the list of outcomes is empty")
    if len(items) > batch_max:
        raise _body_problem(
            f"{len(items)} outcomes in one batch; at most {batch_max} are accepted per request"
        )
    try:
        parsed = _BATCH.validate_python(items)
    except ValidationError as exc:
        problems: dict[tuple[int | None, str], OutcomeProblem] = {}
        for e in exc.errors(include_url=False):
            p = _problem(e, single)
            problems.setdefault((p.index, p.field), p)  # a union reports once per member
        raise OutcomeValidationError(list(problems.values())) from None
    now = time.time_ns() if received_ns is None else received_ns
    return [normal_form(item, now) for item in parsed]


def _body_problem(message: str) -> OutcomeValidationError:
    return OutcomeValidationError([OutcomeProblem(None, "body", message)])


def _problem(err: Any, single: bool) -> OutcomeProblem:
    loc = list(err["loc"])
    index = loc.pop(0) if loc and isinstance(loc[0], int) else None
    if single:
        index = None
    field = str(loc[0]) if loc else "item"
    kind, got = err["type"], err.get("input")
    if kind == "missing":
        message = "is required"
    elif kind == "extra_forbidden":
        message = "is not a known field (request_id, outcome, ts, kind)"
    elif kind == "model_type":
        message = f"each outcome must be an object, got {type(got).__name__}"
        field = "item"
    elif field == "outcome" and kind != "value_error":
        message = (
            "must be a label (non-empty string up to 256 characters, integer or boolean) or a "
            f"finite number, got {_show(got)}"
        )
    elif field == "kind" and kind == "string_pattern_mismatch":
        message = f"must match {KIND_PATTERN}, got {_show(got)}"
    elif kind == "value_error":
        message = str(err.get("ctx", {}).get("error", err["msg"]))
    else:
        message = f"{err['msg'][0].lower()}{err['msg'][1:]}, got {_show(got)}"
    return OutcomeProblem(index, field, message)


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."
