"""The drift page through the demo service in-process: real windows judged by the sentiment
model's drift monitor, alert rules evaluated on them, the chart, roles, bad parameters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infertrail.config import Settings
from tests.unit.console.test_explorer import Demo, _login, demo_settings, running_demo

RULES = """
[[rules]]
name = "sentiment-drift-score"
signal = "drift.score"
model = "sentiment"
comparison = ">="
threshold = 0.0
for_windows = 1

[[rules]]
name = "share-drifted-slow"
signal = "drift.share_drifted"
comparison = ">="
threshold = 0.0
for_windows = 50

[[rules]]
name = "digits-only"
signal = "drift.score"
model = "digits"
comparison = ">"
threshold = 0.5
"""

#: 45 reviews: two full windows of 20 are judged (the last 5 stay open).
TEXTS = [f"{word} product, {adj} delivery #{i}" for i, (word, adj) in enumerate(
    [("great", "fast"), ("terrible", "slow"), ("decent", "ok")] * 15
)]  # fmt: skip


@pytest.fixture
def demo(settings: Settings, tmp_path: Path) -> Iterator[Demo]:
    rules = tmp_path / "rules.toml"
    rules.write_text(RULES)
    with running_demo(demo_settings(settings, alert_rules_file=rules), TEXTS) as d:
        monitor = d.services.runtime.drift["sentiment"]
        assert len(monitor.reports) == 2, monitor.stats
        yield d


def test_windows_features_outputs_and_rule_states(demo: Demo) -> None:
    _login(demo.client, demo.keys["engineer"])  # telemetry: every role
    r = demo.client.get("/ui/drift.json", params={"model": "sentiment"})
    assert r.status_code == 200, r.text
    page = r.json()
    monitor = demo.services.runtime.drift["sentiment"]
    reports = monitor.reports
    assert page["model"] == "sentiment" and "sentiment" in page["models"]
    assert page["n_reports"] == 2
    # Windows newest first, with their verdicts as the reports say.
    assert [w["closed_at"] for w in page["windows"]] == [r.closed_at for r in reversed(reports)]
    assert [w["n_samples"] for w in page["windows"]] == [20, 20]
    assert page["windows"][0]["dataset_drift"] == reports[-1].dataset_drift
    # Every feature of the profile summarized from the latest window.
    assert [f["name"] for f in page["summary"]] == monitor.profile.feature_names
    latest = {f.name: f for f in reports[-1].features}
    for f in page["summary"]:
        assert f["windows"] == 2
        assert f["drifted"] == latest[f["name"]].drifted
        assert f["threshold"] == pytest.approx(latest[f["name"]].threshold)
    # The outputs: each window's label mix against the reference's.
    prediction = page["prediction"]
    assert prediction["reference_shares"] and set(prediction["reference_shares"]) <= set(
        prediction["labels"]
    )
    shares = prediction["windows"][-1]["label_shares"]
    assert sum(v for v in shares.values() if v is not None) == pytest.approx(1.0)
    # Rule states: the fast rule fired on the first window, the slow one counts breaches.
    rules = {row["rule"]: row for row in page["alerts"]["rules"]}
    assert set(rules) == {"sentiment-drift-score", "share-drifted-slow"}  # not digits-only
    assert rules["sentiment-drift-score"]["status"] == "firing"
    assert rules["sentiment-drift-score"]["firing_since"] is not None
    assert rules["share-drifted-slow"]["status"] == "pending"
    assert rules["share-drifted-slow"]["breaches"] == 2
    html = demo.client.get("/ui/drift", params={"model": "sentiment"})
    assert html.status_code == 200 and "Label mix per window" in html.text


def test_one_feature_over_time_with_its_chart(demo: Demo) -> None:
    _login(demo.client, demo.keys["engineer"])
    feature = demo.services.runtime.drift["sentiment"].profile.feature_names[0]
    r = demo.client.get("/ui/drift.json", params={"model": "sentiment", "feature": feature})
    assert r.status_code == 200, r.text
    page = r.json()
    detail = page["detail"]
    assert detail["name"] == feature and len(detail["points"]) == 2
    for point in detail["points"]:
        judged = point["p_value"] if point["p_value"] is not None else point["statistic"]
        assert point["judged"] == pytest.approx(judged)
    assert detail["fired"] == [p for p in detail["points"] if p["drifted"]]
    assert detail["reference"]["count"] > 0
    html = demo.client.get("/ui/drift", params={"model": "sentiment", "feature": feature})
    assert html.status_code == 200
    text = html.text
    assert '<svg class="chart"' in text and 'role="img"' in text
    assert f"{feature}: " in text and "per drift window" in text
    assert '<label for="drift-model">' in text and '<label for="drift-feature">' in text
    assert "firing" in text and "pending" in text


@pytest.mark.parametrize(
    ("params", "field"),
    [({"model": "nope"}, "model"), ({"feature": "no-such-feature"}, "feature")],
)
def test_unknown_model_or_feature_is_422_naming_it(
    demo: Demo, params: dict[str, str], field: str
) -> None:
    _login(demo.client, demo.keys["auditor"])
    r = demo.client.get("/ui/drift.json", params=params)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(f"{field}: ")
    assert demo.client.get("/ui/drift", params=params).status_code == 422
