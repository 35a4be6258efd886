"""schemathesis hooks for test_schemathesis.py (loaded by the schemathesis process it starts).

``date-time`` values: infertrail stores times as 64-bit Unix nanoseconds, so an outcome's
``ts`` is accepted from 1677-09-21 to 2262-04-11, as its description says; JSON Schema's
``date-time`` format has no way to bound a range, and schemathesis draws years 1 to 9999.
Drawing within the range keeps every check on for the routes that take times.
"""

from __future__ import annotations

from datetime import datetime

import schemathesis
from hypothesis import strategies as st

_OFFSETS = st.sampled_from(["Z", "+00:00", "+02:00", "-05:30", "z"])


def _rfc3339(t: datetime, zone: str) -> str:
    return (
        t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond:06d}" if t.microsecond else "") + zone
    )


schemathesis.openapi.format(
    "date-time",
    st.builds(
        _rfc3339,
        st.datetimes(min_value=datetime(1678, 1, 1), max_value=datetime(2261, 12, 31)),
        _OFFSETS,
    ),
)
