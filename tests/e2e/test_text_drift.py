"""A real domain shift, not a synthetic one, through the running service.

The sentiment model was trained on amazon and yelp review sentences. Served the held-out amazon
and yelp sentences, its drift window shows no drifted text feature; served imdb movie-review
sentences (longer, and with words the training reviews never used), the out-of-vocabulary rate
and the lengths drift. Requests go over HTTP through the simulator; the verdicts are read from
the drift monitor's reports and from ``/metrics``.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infertrail.demo.simulate import simulate_traffic
from infertrail.drift import DriftReport
from infertrail.models import sentiment
from tests.e2e.conftest import DriftService, drift_service
from tests.integration.conftest import settings_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# One window holds exactly the 400 held-out sentences, so its verdict does not depend on the
# order in which concurrent requests reach the drift monitor.
WINDOW = len(sentiment.split().test_texts)
TEXT_FEATURES = ("n_chars", "n_tokens", "oov_rate")


def one_window(service: DriftService, scenario: str, seed: int) -> DriftReport:
    result = simulate_traffic(
        service.base_url,
        model="sentiment",
        scenario=scenario,
        windows=1,
        window_size=WINDOW,
        concurrency=8,
        seed=seed,
    )
    assert (result.ok, result.failed) == (WINDOW, 0), result.summary()
    reports = service.judged("sentiment")
    report = reports[-1]
    assert report.n_samples == WINDOW
    return report


def drifted_gauges(base_url: str) -> dict[str, float]:
    """infertrail_drift_feature_drifted per feature of the sentiment model, from /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == "infertrail_drift_feature_drifted"
                and labels.get("infertrail_model_name") == "sentiment"
            ):
                out[labels["feature"]] = sample.value
    return out


def test_imdb_sentences_drift_and_held_out_reviews_do_not(
    isolated_env: None, tmp_path: Path, drift_models: Path
) -> None:
    settings = settings_for(
        tmp_path / "data",
        drift_window_size=WINDOW,
        drift_window_seconds=None,
        drift_sample_rate=1.0,
        metric_export_interval_ms=60_000,
    )
    with drift_service(settings, drift_models) as service:
        clean = one_window(service, "clean", seed=0)
        verdicts = {f.name: f for f in clean.features}
        assert set(verdicts) == set(TEXT_FEATURES)
        assert [n for n, f in verdicts.items() if f.drifted] == [], clean.features
        assert not clean.dataset_drift
        assert drifted_gauges(service.base_url) == dict.fromkeys(TEXT_FEATURES, 0.0)

        shifted = one_window(service, "imdb", seed=0)
        verdicts = {f.name: f for f in shifted.features}
        assert all(verdicts[n].drifted for n in TEXT_FEATURES), shifted.features
        assert shifted.dataset_drift
        # imdb sentences use words the amazon/yelp reviews never did, and are longer
        assert verdicts["oov_rate"].method == "ks"
        assert verdicts["oov_rate"].p_value is not None and verdicts["oov_rate"].p_value < 1e-6
        assert shifted.drift_score > clean.drift_score
        assert drifted_gauges(service.base_url) == dict.fromkeys(TEXT_FEATURES, 1.0)
        # the digits model saw no traffic: nothing was judged for it
        assert service.drift_monitor("digits").reports == []
