"""SLO definitions: the native form, its validation, and errors that name the SLO and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infertrail.slo.definitions import (
    SLOError,
    format_duration,
    load_slos,
    parse_duration,
    parse_slos,
)
from tests.unit.slo.helpers import slo_body


def problems(*bodies: dict[str, Any], **top: Any) -> list[str]:
    with pytest.raises(SLOError) as info:
        parse_slos({**top, "slos": list(bodies)})
    return info.value.problems


def test_native_definitions_validate_with_defaults() -> None:
    slos = parse_slos(
        {
            "service": "demo",
            "labels": {"team": "nlp"},
            "slos": [
                {
                    "name": "sentiment-latency",
                    "model": "sentiment",
                    "objective": 99.9,
                    "sli": {"kind": "latency", "threshold_seconds": 0.25},
                    "labels": {"tier": "1"},
                }
            ],
        }
    )
    s = slos.slo("sentiment-latency")
    assert s.service == "demo"
    assert s.labels == {"team": "nlp", "tier": "1"}
    assert s.window == "28d" and s.window_s == 28 * 86400
    assert s.target == pytest.approx(0.999)
    assert s.error_budget == (100 - 99.9) / 100
    assert s.slo_id == "demo-sentiment-latency"
    assert s.signal_key == "sentiment_latency"
    assert s.alert_name == "SentimentLatencySLO"
    assert not s.alerting.page_alert.disable


@pytest.mark.parametrize(
    ("sli", "kind"),
    [
        ({"kind": "availability", "exclude_error_types": ["invalid_input"]}, "availability"),
        ({"kind": "confidence", "threshold": 0.8}, "confidence"),
        ({"kind": "latency", "threshold_seconds": 10.0}, "latency"),
        ({"kind": "ood"}, "ood"),
    ],
)
def test_every_sli_kind_validates(sli: dict[str, Any], kind: str) -> None:
    s = parse_slos({"slos": [slo_body(sli=sli)]}).slos[0]
    assert s.sli.kind == kind


def test_latency_threshold_must_be_a_duration_bucket_boundary() -> None:
    (p,) = problems(slo_body(sli={"kind": "latency", "threshold_seconds": 0.3}))
    assert p.startswith("slo 'sentiment-latency': sli.threshold_seconds must be a bucket boundary")
    assert "infertrail.inference.duration" in p
    assert "0.25, 0.5" in p and "got 0.3" in p


def test_confidence_threshold_must_be_a_confidence_bucket_boundary() -> None:
    (p,) = problems(slo_body(sli={"kind": "confidence", "threshold": 0.75}))
    assert "sli.threshold must be a bucket boundary" in p
    assert "infertrail.prediction.confidence" in p and "0.7, 0.8" in p


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"objective": 0.999}, "objective is a percentage (99.9 for 99.9 %), got 0.999"),
        ({"objective": 100}, "objective must be < 100"),
        ({"objective": "high"}, "objective: input should be a valid number"),
        ({"window": "1d"}, "window must be from 3d"),
        ({"window": "28 days"}, "window must be a duration like 30m, 6h, 28d or 4w"),
        ({"window": "1M"}, "window must be a duration like"),
        ({"name": "Bad Name"}, "name must match"),
        ({"sli": {"kind": "throughput"}}, "sli.kind must be one of latency, availability"),
        ({"sli": {}}, "sli.kind is required"),
        ({"sli": {"kind": "latency"}}, "sli.threshold_seconds is required"),
        ({"sli": {"kind": "ood", "threshold": 1}}, "sli.threshold is not a known field"),
        ({"model": "*", "sli": {"kind": "ood"}}, "model: an ood SLI needs one model"),
        ({"labels": {"severity": "x"}}, "labels has label 'severity', which is set from the SLO"),
        ({"labels": {"sloth_slo": "x"}}, "labels has label 'sloth_slo'"),
        ({"labels": {"bad-name": "x"}}, "labels has label 'bad-name', which must match"),
        ({"color": "red"}, "color is not a known field"),
        (
            {"alerting": {"page_alert": {"severity": "sev1"}}},
            "alerting.page_alert.severity must be one of",
        ),
        ({"alerting": {"name": "has space"}}, "alerting.name must match"),
        (
            {"sli": {"kind": "availability", "exclude_error_types": ["a|b"]}},
            "sli.exclude_error_types error type 'a|b' must be",
        ),
    ],
)
def test_invalid_fields_are_named(override: dict[str, Any], expected: str) -> None:
    found = problems(slo_body(**override))
    assert any(expected in p for p in found), found
    name = override.get("name", "sentiment-latency")
    assert all(p.startswith(f"slo {name!r}: ") for p in found), found


def test_every_mistake_is_reported_at_once() -> None:
    found = problems(
        slo_body(objective=0.5),
        slo_body(name="other", sli={"kind": "latency", "threshold_seconds": 1.5}),
        slo_body(name="other"),
    )
    assert len(found) == 3, found
    assert any(p.startswith("slo 'sentiment-latency': objective") for p in found)
    assert any(p.startswith("slo 'other': sli.threshold_seconds") for p in found)
    assert "slo 'other': name is used by more than one SLO" in found


def test_service_is_required_somewhere() -> None:
    body = slo_body()
    del body["service"]
    assert problems(body) == ["slo 'sentiment-latency': service is required"]
    # ... or given once at the top level.
    assert parse_slos({"service": "svc", "slos": [body]}).slos[0].service == "svc"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "top level must be a table/mapping, got list"),
        ({"slos": []}, "slos must be a non-empty list"),
        ({"slos": [1]}, "slo #1: must be a table, got int"),
        ({"version": "prometheus/v1", "slos": [slo_body()]}, "version must be 'infertrail/v1'"),
        ({"slo": [slo_body()]}, "unknown top-level key 'slo'"),
    ],
)
def test_file_level_mistakes(data: Any, expected: str) -> None:
    with pytest.raises(SLOError) as info:
        parse_slos(data, source="x.yaml")
    assert any(expected in p for p in info.value.problems), info.value.problems
    assert str(info.value).startswith("x.yaml: ")


def test_fingerprint_follows_what_is_counted() -> None:
    base = parse_slos({"slos": [slo_body()]}).slos[0]
    same = parse_slos({"slos": [slo_body(objective=95, window="7d")]}).slos[0]
    other = parse_slos({"slos": [slo_body(sli={"kind": "latency", "threshold_seconds": 0.5})]})
    assert base.fingerprint() == same.fingerprint()  # objective/window: same events
    assert base.fingerprint() != other.slos[0].fingerprint()


def test_durations_round_trip() -> None:
    for text, seconds in [("5m", 300), ("6h", 21600), ("28d", 2419200), ("4w", 2419200)]:
        assert parse_duration(text) == seconds
    assert format_duration(2419200) == "28d"
    assert format_duration(7200) == "2h" and format_duration(1800) == "30m"
    assert format_duration(90) == "90s"
    with pytest.raises(ValueError, match="got '0d'"):
        parse_duration("0d")


def test_load_toml_and_yaml(tmp_path: Path) -> None:
    toml = tmp_path / "slos.toml"
    toml.write_text(
        'service = "demo"\n'
        "[[slos]]\n"
        'name = "avail"\nobjective = 99.5\n'
        'sli = { kind = "availability" }\n'
    )
    assert load_slos(toml).slo("avail").objective == 99.5
    yaml_file = tmp_path / "slos.yaml"
    yaml_file.write_text(
        "service: demo\nslos:\n  - name: avail\n    objective: 99\n    sli: {kind: availability}\n"
    )
    assert load_slos(yaml_file).slo("avail").sli.kind == "availability"


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("slos.json", "{}", "unknown file type '.json'"),
        ("slos.yaml", "slos: [", "not valid YAML"),
        ("slos.toml", "slos = [", "not valid TOML"),
        ("slos.yaml", "slos: []\n---\nslos: []\n", "one document; got several"),
    ],
)
def test_load_reports_file_problems(tmp_path: Path, name: str, text: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SLOError) as info:
        load_slos(path)
    assert expected in str(info.value)
    assert str(info.value).startswith(str(path))


def test_missing_file_is_an_slo_error(tmp_path: Path) -> None:
    with pytest.raises(SLOError, match="cannot read"):
        load_slos(tmp_path / "absent.yaml")


def test_example_definitions_validate() -> None:
    repo = Path(__file__).resolve().parents[3]
    slos = load_slos(repo / "examples" / "slos.yaml")
    assert {s.sli.kind for s in slos.slos} == {"latency", "availability", "confidence", "ood"}
    openslo = load_slos(repo / "examples" / "openslo.yaml")
    assert len(openslo) >= 1
