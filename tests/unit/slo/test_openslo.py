"""OpenSLO v1 input: what maps onto native SLOs, and what is refused with its OpenSLO path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from infertrail.slo.definitions import SLOError, load_slos
from infertrail.slo.openslo import is_openslo, parse_openslo


def good_source(**spec: Any) -> dict[str, Any]:
    body = {"kind": "latency", "threshold_seconds": 0.25, "model": "sentiment", **spec}
    return {"metricSource": {"type": "infertrail", "spec": body}}


def slo_doc(**spec: Any) -> dict[str, Any]:
    """A valid OpenSLO v1 SLO with an inline indicator; ``spec`` keys override."""
    body: dict[str, Any] = {
        "service": "demo",
        "description": "fast sentiment",
        "budgetingMethod": "Occurrences",
        "timeWindow": [{"duration": "28d", "isRolling": True}],
        "indicator": {
            "metadata": {"name": "fast"},
            "spec": {
                "ratioMetric": {
                    "counter": True,
                    "good": good_source(),
                    "total": {
                        "metricSource": {
                            "type": "infertrail",
                            "spec": {"kind": "latency", "model": "sentiment"},
                        }
                    },
                }
            },
        },
        "objectives": [{"displayName": "fast", "target": 0.999}],
    }
    body.update(spec)
    return {
        "apiVersion": "openslo/v1",
        "kind": "SLO",
        "metadata": {"name": "sentiment-latency", "labels": {"team": ["nlp", "ml"]}},
        "spec": body,
    }


def problems(*docs: Any) -> list[str]:
    with pytest.raises(SLOError) as info:
        parse_openslo(list(docs), source="o.yaml")
    return info.value.problems


def test_inline_indicator_maps_onto_a_native_slo() -> None:
    slos = parse_openslo([slo_doc()])
    s = slos.slo("sentiment-latency")
    assert s.service == "demo" and s.model == "sentiment"
    assert s.objective == 99.9 and s.error_budget == (100 - 99.9) / 100
    assert s.window == "28d"
    assert s.sli.kind == "latency"
    assert s.labels == {"team": "nlp,ml"}  # OpenSLO's list of values, joined


def test_indicator_ref_and_target_percent_and_annotations() -> None:
    doc = slo_doc(objectives=[{"targetPercent": 99.5}])
    sli = {
        "apiVersion": "openslo/v1",
        "kind": "SLI",
        "metadata": {"name": "fast"},
        "spec": doc["spec"].pop("indicator")["spec"],
    }
    doc["spec"]["indicatorRef"] = "fast"
    doc["metadata"]["annotations"] = {
        "infertrail.dev/alert-name": "FastSLO",
        "infertrail.dev/page-receivers": "oncall, backup",
        "infertrail.dev/ticket-receivers": "chat",
    }
    service = {"apiVersion": "openslo/v1", "kind": "Service", "metadata": {"name": "demo"}}
    s = parse_openslo([service, sli, doc]).slos[0]
    assert s.objective == 99.5
    assert s.alert_name == "FastSLO"
    assert s.alerting.page_alert.receivers == ("oncall", "backup")
    assert s.alerting.ticket_alert.receivers == ("chat",)


def test_is_openslo() -> None:
    assert is_openslo({"apiVersion": "openslo/v1"})
    assert not is_openslo({"slos": []})
    assert not is_openslo([1])


def mutate(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(slo_doc())
    node: Any = doc
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


_DELETE = object()
_RATIO = ["spec", "indicator", "spec", "ratioMetric"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            [*_RATIO, "good", "metricSource", "spec", "threshold_seconds"],
            0.3,
            "spec.indicator.spec.ratioMetric.good.metricSource.spec.threshold_seconds must be "
            "a bucket boundary",
        ),
        (
            [*_RATIO, "good", "metricSource", "type"],
            "Prometheus",
            "spec.indicator.spec.ratioMetric.good.metricSource.type must be 'infertrail'",
        ),
        ([*_RATIO, "bad"], good_source(), "ratioMetric.bad is not supported"),
        (
            [*_RATIO, "total", "metricSource", "spec", "kind"],
            "availability",
            "total.metricSource.spec.kind must equal good's ('latency')",
        ),
        (
            [*_RATIO, "total", "metricSource", "spec", "threshold_seconds"],
            0.25,
            "total.metricSource.spec.threshold_seconds is not a known field",
        ),
        (
            ["spec", "indicator", "spec"],
            {"thresholdMetric": {}},
            "thresholdMetric is not supported",
        ),
        (["spec", "budgetingMethod"], "Timeslices", "spec.budgetingMethod must be 'Occurrences'"),
        (
            ["spec", "timeWindow"],
            [{"duration": "1M", "calendar": {"startTime": "2020-01-01 00:00:00"}}],
            "spec.timeWindow[0] must be rolling",
        ),
        (
            ["spec", "timeWindow"],
            [{"duration": "1M", "isRolling": True}],
            "months, quarters and years have no fixed length",
        ),
        (
            ["spec", "timeWindow"],
            [{"duration": "1d", "isRolling": True}],
            "spec.timeWindow[0].duration must be from 3d",
        ),
        (
            ["spec", "objectives"],
            [{"target": 0.9}, {"target": 0.99}],
            "spec.objectives must be a list of exactly one objective",
        ),
        (["spec", "objectives"], [{"target": 1.5}], "spec.objectives[0].target must be in (0, 1)"),
        (
            ["spec", "objectives"],
            [{"target": 0.9, "targetPercent": 90}],
            "needs exactly one of target, targetPercent",
        ),
        (
            ["spec", "objectives"],
            [{"targetPercent": 100}],
            "spec.objectives[0].targetPercent must be < 100",
        ),
        (
            ["spec", "alertPolicies"],
            [{"alertPolicyRef": "p"}],
            "spec.alertPolicies is not supported",
        ),
        (["spec", "service"], _DELETE, "spec.service is required"),
        (["spec", "indicatorRef"], "other", "exactly one of spec.indicator and spec.indicatorRef"),
        (["metadata", "name"], "Not Valid", "metadata.name must match"),
    ],
)
def test_refusals_name_the_openslo_field(path: list[Any], value: Any, expected: str) -> None:
    found = problems(mutate(path, value))
    assert any(expected in p for p in found), found
    assert all(p.startswith("slo ") for p in found), found


def test_documents_that_are_not_slos() -> None:
    found = problems(
        {"apiVersion": "openslo/v1", "kind": "AlertPolicy", "metadata": {"name": "p"}},
        {"apiVersion": "openslo/v1alpha", "kind": "SLO", "metadata": {"name": "old"}},
        {"apiVersion": "openslo/v1", "kind": "SLO"},
        slo_doc(indicator=None, indicatorRef="missing"),
    )
    assert any("kind 'AlertPolicy' is not supported" in p for p in found)
    assert any("document #2: apiVersion must be 'openslo/v1'" in p for p in found)
    assert any("document #3 (SLO): metadata.name is required" in p for p in found)
    assert any("spec.indicatorRef 'missing' names no kind: SLI document" in p for p in found)


def test_a_file_without_slos() -> None:
    assert problems({"apiVersion": "openslo/v1", "kind": "Service", "metadata": {"name": "s"}}) == [
        "no kind: SLO document found"
    ]


def test_openslo_file_loads_like_native(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump_all([slo_doc()]))
    assert load_slos(path).slo("sentiment-latency").sli.kind == "latency"


def test_example_openslo_equals_the_native_example() -> None:
    repo = Path(__file__).resolve().parents[3]
    from_openslo = load_slos(repo / "examples" / "openslo.yaml").slo("sentiment-latency")
    native = load_slos(repo / "examples" / "slos.yaml").slo("sentiment-latency")
    for field in ("service", "model", "objective", "window", "sli"):
        assert getattr(from_openslo, field) == getattr(native, field), field
    assert from_openslo.alert_name == native.alert_name
