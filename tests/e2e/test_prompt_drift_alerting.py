"""Prompt drift to page: an LLM's reference prompts from one domain, traffic from another.

The reference is the amazon and yelp review sentences the sentiment model trained on, as the
prompts of an LLM (`build_llm_reference`: the lengths profile and the hashed n-gram embedding
sample). Generations go through the whole runtime (GenAI -> Monitor -> DriftMonitor windows of
100 prompts -> the embedding analyzer -> the alert engine -> a local PagerDuty Events API v2
receiver checking the documented payload). The held-out amazon and yelp sentences, four
windows of them, page nobody; imdb movie-review sentences page once, on the second window in a
row (``for_windows = 2``), which is the detection within N windows the rule promises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from infertrail.drift.llm_reference import build_llm_reference
from infertrail.events import ModelInfo
from infertrail.models import sentiment
from infertrail.runtime.assembly import Runtime
from tests.integration.conftest import poll, settings_for
from tests.unit.alerting.fakes import pagerduty_receiver

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 100
FOR_WINDOWS = 2
LLM = ModelInfo("support-llm", "2026-12", hashlib.sha256(b"support-llm weights").hexdigest())
RULES = """\
[receivers.oncall]
type = "pagerduty"
url = "{pd}/v2/enqueue"
routing_key = "R0UT1NGKEYE2E0123456789ABCDEF012"
source = "infertrail-e2e"

[[rules]]
name = "support-llm-prompt-drift"
signal = "embedding.drift"
model = "support-llm"
comparison = ">"
threshold = 0.5
for_windows = {n}
resolve_after = 2
severity = "warning"
receivers = ["oncall"]
annotations = {{ summary = "{{model}}: prompts drifted from the reference" }}
"""


def _words(text: str) -> int:
    return len(text.split())


def test_a_domain_shift_in_prompts_pages_once_and_the_same_domain_never(
    isolated_env: None, tmp_path: Path
) -> None:
    data = sentiment.split()
    settings = settings_for(
        tmp_path / "data",
        drift_window_size=WINDOW,
        drift_window_seconds=None,
        drift_sample_rate=1.0,
        metric_export_interval_ms=60_000,
        telemetry_files=False,
    )
    reference = data.train_texts
    build_llm_reference(
        settings.models_dir,
        LLM.name,
        reference,
        ["Thanks for the review."] * len(reference),
        prompt_tokens=[_words(t) for t in reference],
        response_tokens=[4] * len(reference),
        model_sha256=LLM.sha256,
    )
    imdb, _ = sentiment.load_sentences("imdb")
    with pagerduty_receiver() as pd:
        rules = tmp_path / "alert-rules.toml"
        rules.write_text(RULES.format(pd=pd.url, n=FOR_WINDOWS))
        settings.alert_rules_file = rules
        runtime = Runtime.start(settings, models=[LLM])
        try:
            assert runtime.alerting is not None
            engine, dispatch = runtime.alerting.engine, runtime.alerting.dispatch
            drift = runtime.drift[LLM.name]
            genai = runtime.genai("openai", count_tokens=_words)

            def window(prompts: Sequence[str]) -> dict[str, object]:
                before = len(drift.reports)
                for prompt in prompts:
                    with genai.chat(LLM, [{"role": "user", "content": prompt}]) as call:
                        call.finish("Thanks for the review.", finish_reasons=["stop"])
                runtime.flush(30)
                assert drift.flush(30)
                reports = drift.reports
                assert len(reports) == before + 1, "each batch must fill exactly one window"
                section: dict[str, object] = reports[-1].sections["embedding"]
                return section

            # Same domain, four windows: the calibrated test raises no drift, nobody is paged.
            held_out = data.test_texts
            clean = [window(held_out[i : i + WINDOW]) for i in range(0, 4 * WINDOW, WINDOW)]
            assert [s["drift"] for s in clean] == [False] * 4, clean
            assert not engine.firing()

            # Another domain: drift in every window, the page on the second in a row.
            first = window(imdb[:WINDOW])
            assert first["drift"] is True, first
            assert not engine.firing(), "one window must not page (for_windows = 2)"
            second = window(imdb[WINDOW : 2 * WINDOW])
            assert second["drift"] is True, second
            assert engine.firing()

            def delivered() -> bool | None:
                stats = dispatch.stats().values()
                return True if all(s.delivered + s.failed == s.submitted for s in stats) else None

            poll(delivered, timeout_s=30, what="the page to be delivered")
        finally:
            runtime.shutdown()
        triggers = [r for r in pd.received if r.body.get("event_action") == "trigger"]
        assert len(triggers) == 1, pd.received
        payload = triggers[0].body["payload"]
        assert "support-llm" in payload["summary"]
        assert payload["severity"] == "warning"
