"""Prompt drift calibrated on the shipped review sentences (models/data/sentiment, UCI
"Sentiment Labelled Sentences", Kotzias et al. 2015): a reference of amazon + yelp training
sentences; held-out amazon + yelp windows must alarm at most at the nominal rate, imdb windows
(another domain: movie reviews) nearly always."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from infertrail.drift.embedding import EmbeddingDriftAnalyzer, EmbeddingReference
from infertrail.models import sentiment

WINDOWS = 50  # per window size
SIZES = (100, 200)


@pytest.fixture(scope="module")
def analyzer() -> EmbeddingDriftAnalyzer:
    reference = EmbeddingReference.build(sentiment.split().train_texts, seed=0)
    assert reference.n_reference == 500 and reference.n_texts == 1600
    return EmbeddingDriftAnalyzer(reference, seed=1)


def _alarm_rate(analyzer: EmbeddingDriftAnalyzer, pool: list[str], seed: int) -> float:
    """The share of WINDOWS windows of each size drawn from ``pool`` that raised drift."""
    rng = np.random.default_rng(seed)
    alarms = [
        analyzer.judge([pool[i] for i in rng.choice(len(pool), size, replace=False)]).p_value
        < analyzer.alpha
        for size in SIZES
        for _ in range(WINDOWS)
    ]
    return float(np.mean(alarms))


def test_held_out_reviews_alarm_at_most_at_alpha(analyzer: EmbeddingDriftAnalyzer) -> None:
    n = WINDOWS * len(SIZES)
    # alarms a correct test exceeds with probability < 0.1% (independent windows at alpha)
    allowed = int(sps.binom.isf(0.001, n, analyzer.alpha)) / n
    rate = _alarm_rate(analyzer, sentiment.split().test_texts, seed=2)
    assert rate <= allowed, (
        f"held-out amazon+yelp windows (100 and 200 prompts) raised drift in {rate:.1%} of "
        f"{n}; alpha {analyzer.alpha:.0%}, at most {allowed:.1%} allowed"
    )


def test_another_domain_is_detected_in_nearly_every_window(
    analyzer: EmbeddingDriftAnalyzer,
) -> None:
    imdb, _ = sentiment.load_sentences(sentiment.SHIFTED_SOURCE)
    rate = _alarm_rate(analyzer, imdb, seed=3)
    assert rate >= 0.9, (
        f"imdb windows (100 and 200 prompts) raised drift in only {rate:.1%} of "
        f"{WINDOWS * len(SIZES)}"
    )
