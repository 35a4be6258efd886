"""Running counts behind the observable prediction and error counters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.metrics import CallbackOptions

from infertrail.telemetry.setup import RunningCounts

LABELS = st.sampled_from(["positive", "negative", ""])


@given(st.lists(LABELS, max_size=50))
def test_observe_reports_every_series_with_its_total(labels: list[str]) -> None:
    counts = RunningCounts()
    for label in labels:
        counts.add((("model", "m"), ("label", label)))
    seen = {dict(o.attributes or {})["label"]: o.value for o in counts.observe(CallbackOptions())}
    assert seen == {label: labels.count(label) for label in set(labels)}


def test_add_accepts_a_step_and_keys_are_attribute_dicts() -> None:
    counts = RunningCounts()
    counts.add((("error.type", "invalid_input"),), 3)
    counts.add((("error.type", "invalid_input"),))
    [obs] = counts.observe(CallbackOptions())
    assert obs.value == 4
    assert obs.attributes == {"error.type": "invalid_input"}
