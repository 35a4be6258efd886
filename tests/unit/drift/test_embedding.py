"""Prompt drift: the hashed text embedding, the MMD permutation test, the embedding reference
file, the window analyzer (alone, in a DriftMonitor, as the runtime builds it) and the LLM
reference builder."""

from __future__ import annotations

import io
import json
import re
import statistics
import time
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from infertrail.alerting.rules import parse_rules
from infertrail.alerting.signals import signal_promql
from infertrail.config import Settings
from infertrail.drift import DriftMonitor, DriftReport, DriftWindow, load_profile
from infertrail.drift.embedding import (
    EMBEDDER,
    MIN_PROMPTS,
    EmbeddingDriftAnalyzer,
    EmbeddingFileError,
    EmbeddingReference,
    embedding_path,
    hashed_text_embedding,
    median_bandwidth,
    mmd_permutation_test,
    window_prompts,
)
from infertrail.drift.llm_reference import LLM_FEATURES, build_llm_reference, llm_profile
from infertrail.events import Generation, InferenceEvent, ModelInfo
from infertrail.runtime.drift import window_analyzers
from tests.unit.drift.conftest import synthetic_texts

LLM = ModelInfo("chat", "1", "ef" * 32)
DOC = Path(__file__).resolve().parents[3] / "docs" / "drift.md"


def _window(prompts: list[str]) -> DriftWindow:
    return DriftWindow(np.zeros((len(prompts), 1)), inputs=tuple({"prompt": p} for p in prompts))


@pytest.fixture(scope="module")
def reference() -> EmbeddingReference:
    return EmbeddingReference.build(synthetic_texts(800, seed=1), seed=0, model_name="chat")


# -- the embedding ---------------------------------------------------------------------------


def test_embedding_is_deterministic_unit_vectors_pinned_by_its_version() -> None:
    texts = ["The battery died after a week.", "", "Great pizza and friendly staff"]
    e = hashed_text_embedding(texts)
    assert e.shape == (3, 256) and e.dtype == np.float64
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), [1.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(e, hashed_text_embedding(texts))
    # the same text gives the same vector in every process and version of "hashed-char-ngrams/1"
    np.testing.assert_allclose(
        e[0, :4], [-0.08966902, -0.02735333, -0.05874561, -0.00918581], atol=1e-7
    )
    assert EMBEDDER == "hashed-char-ngrams/1"
    assert hashed_text_embedding(texts[:1], dim=16).shape == (1, 16)
    assert hashed_text_embedding([]).shape == (0, 256)


def test_embedding_sees_spelling_and_vocabulary_not_meaning() -> None:
    a, b, c, d = hashed_text_embedding(
        [
            "the battery died after a week",
            "the battery dies after one week",
            "great pizza and friendly staff",
            "the power cell stopped working within seven days",
        ]
    )
    assert a @ b > 0.7  # near-identical spelling
    assert abs(a @ c) < 0.2  # other words
    assert a @ d < 0.4  # a paraphrase in other words is far: not a semantic embedding


@pytest.mark.parametrize(
    ("texts", "dim", "message"),
    [
        ("one string", 256, "sequence of str, not a single string"),
        (["ok", 3], 256, r"texts\[1\] is int, not str"),
        (["ok"], 1, "dim must be an int >= 2"),
        (["ok"], True, "dim must be an int >= 2"),
    ],
)
def test_embedding_refuses_bad_inputs(texts: object, dim: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hashed_text_embedding(texts, dim=dim)  # type: ignore[arg-type]


# -- the MMD permutation test ----------------------------------------------------------------


def _naive_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    def k(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2)))

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_is_the_unbiased_statistic_and_the_median_bandwidth() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(12, 3)), rng.normal(0.5, size=(9, 3))
    result = mmd_permutation_test(x, y, n_permutations=50)
    d2 = [np.sum((x[i] - x[j]) ** 2) for i in range(12) for j in range(i + 1, 12)]
    assert result.bandwidth == pytest.approx(np.sqrt(0.5 * np.median(d2)))
    assert result.mmd2 == pytest.approx(_naive_mmd2(x, y, result.bandwidth), abs=1e-12)
    assert (result.n_reference, result.n_current, result.n_permutations) == (12, 9, 50)
    fixed = mmd_permutation_test(x, y, bandwidth=2.0, n_permutations=50)
    assert fixed.bandwidth == 2.0
    assert fixed.mmd2 == pytest.approx(_naive_mmd2(x, y, 2.0), abs=1e-12)


def test_shifted_gaussians_are_detected_at_the_smallest_p_value() -> None:
    rng = np.random.default_rng(1)
    result = mmd_permutation_test(
        rng.normal(size=(100, 5)), rng.normal(0.8, size=(60, 5)), n_permutations=200
    )
    assert result.mmd2 > 0.05
    assert result.p_value == 1 / 201  # never 0: no permutation reached the observed value


def test_identical_distributions_give_uniform_p_values() -> None:
    rng = np.random.default_rng(2)
    p = np.array(
        [
            mmd_permutation_test(
                rng.normal(size=(40, 3)), rng.normal(size=(25, 3)), n_permutations=99, seed=i
            ).p_value
            for i in range(300)
        ]
    )
    assert p.min() >= 1 / 100
    # uniform on {1/100, ..., 1}: the KS distance to U(0, 1) is at most its step plus noise
    ks = sps.kstest(p, "uniform")
    assert ks.statistic < 0.1, f"p-values far from uniform: {ks}"
    rejected = np.mean(p <= 0.05)
    assert rejected <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300), f"{rejected:.3f} rejected at 5%"


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 12),
    st.integers(2, 12),
    st.integers(1, 4),
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 3.0),
)
def test_p_value_is_never_zero_and_the_statistic_symmetric(
    m: int, n: int, dim: int, seed: int, shift: float
) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(m, dim)), rng.normal(shift, size=(n, dim))
    a = mmd_permutation_test(x, y, n_permutations=30, bandwidth=1.5, seed=seed)
    b = mmd_permutation_test(y[::-1], x[::-1], n_permutations=30, bandwidth=1.5, seed=seed)
    assert 1 / 31 <= a.p_value <= 1.0
    assert a.mmd2 == pytest.approx(b.mmd2, abs=1e-9)


@pytest.mark.parametrize(
    ("x", "y", "options", "message"),
    [
        (np.zeros(5), np.zeros((5, 1)), {}, r"reference must be 2-D .* got shape \(5,\)"),
        (np.ones((5, 2)), np.ones((5, 3)), {}, "current has 3 columns, the reference 2"),
        (np.ones((1, 2)), np.ones((5, 2)), {}, "reference needs at least 2 rows"),
        (np.ones((5, 2)), np.ones((1, 2)), {}, "current needs at least 2 rows"),
        (np.ones((5, 2)), np.full((5, 2), np.nan), {}, "current holds NaN or infinite"),
        (np.ones((5, 2)), np.ones((5, 2)), {}, "median squared distance .* is 0"),
        (np.eye(5), np.eye(5), {"n_permutations": 0}, "n_permutations must be at least 1"),
        (np.eye(5), np.eye(5), {"n_permutations": 2.0}, "n_permutations must be an int"),
        (np.eye(5), np.eye(5), {"bandwidth": 0.0}, "bandwidth must be finite and positive"),
        (np.eye(5), np.eye(5), {"bandwidth": float("nan")}, "bandwidth must be finite"),
    ],
)
def test_mmd_refuses_bad_inputs(
    x: np.ndarray, y: np.ndarray, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        mmd_permutation_test(x, y, **options)  # type: ignore[arg-type]


def test_median_bandwidth_of_unit_vectors() -> None:
    assert median_bandwidth(np.eye(4)) == pytest.approx(1.0)  # every squared distance is 2


# -- the reference file ----------------------------------------------------------------------


def test_reference_samples_embeds_and_round_trips(
    reference: EmbeddingReference, tmp_path: Path
) -> None:
    assert reference.embeddings.shape == (500, 256) and reference.n_texts == 800
    assert reference.embedder == EMBEDDER and reference.alpha == 0.01
    assert reference.bandwidth == pytest.approx(median_bandwidth(reference.embeddings))
    path = tmp_path / "chat" / "embedding.npz"
    reference.save(path)
    back = EmbeddingReference.load(path)
    np.testing.assert_array_equal(back.embeddings, reference.embeddings)
    fields = ("bandwidth", "alpha", "embedder", "n_texts", "model_name", "model_sha256")
    for name in (*fields, "created_at"):
        assert getattr(back, name) == getattr(reference, name), name
    assert reference.created_at and back.model_name == "chat"
    assert [p.name for p in path.parent.iterdir()] == ["embedding.npz"]  # no temporary left
    small = EmbeddingReference.build(synthetic_texts(60, seed=2))
    assert small.n_reference == 60 and small.n_texts == 60


def _rewrite(path: Path, header: dict[str, object], embeddings: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, header=np.array(json.dumps(header)), embeddings=embeddings)
    path.write_bytes(buf.getvalue())


def test_a_damaged_or_mismatched_file_is_refused_by_name(
    reference: EmbeddingReference, tmp_path: Path
) -> None:
    good = tmp_path / "embedding.npz"
    reference.save(good)
    with pytest.raises(EmbeddingFileError, match=r"was built for model sha256 .*not the served"):
        EmbeddingReference.load(good, expected_sha256="ab" * 32)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(EmbeddingFileError, match=f"embedding reference {bad}"):
        EmbeddingReference.load(bad)
    with pytest.raises(EmbeddingFileError, match="No such file"):
        EmbeddingReference.load(tmp_path / "missing.npz")
    with np.load(good) as npz:
        header = json.loads(str(npz["header"]))
    tampered = reference.embeddings.copy()
    tampered[0, 0] += 0.5
    _rewrite(bad, header, tampered)
    with pytest.raises(
        EmbeddingFileError, match=r"do not match the sha256 in the header \(damaged\)"
    ):
        EmbeddingReference.load(bad)
    changes: list[tuple[dict[str, object], str]] = [
        ({"embedder": "sentence-transformers/x"}, "embedded by 'sentence-transformers/x'"),
        ({"version": 2}, "version 2 is not supported"),
        ({"format": "other"}, "is not an infertrail-embedding-reference file"),
        ({"extra": 1}, r"unknown \['extra'\]"),
        ({"embeddings": {"shape": [500, 256]}}, "header embeddings must be"),
        ({"n_texts": 10}, "n_texts 10 is smaller than the sample"),
        ({"bandwidth": -1.0}, "bandwidth must be finite and positive"),
    ]
    for change, message in changes:
        _rewrite(bad, {**header, **change}, reference.embeddings)
        with pytest.raises(EmbeddingFileError, match=message):
            EmbeddingReference.load(bad)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("other.npy", b"")
    with pytest.raises(EmbeddingFileError, match="embedding reference"):
        EmbeddingReference.load(bad)


def test_reference_refuses_too_few_prompts_and_bad_settings() -> None:
    with pytest.raises(ValueError, match="at least 50 prompts, got 10"):
        EmbeddingReference.build(synthetic_texts(10, seed=0))
    with pytest.raises(ValueError, match=r"texts\[70\] is bytes, not str"):
        EmbeddingReference.build([*synthetic_texts(70, seed=0), b"x"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="sample_size must be at least 50"):
        EmbeddingReference.build(synthetic_texts(100, seed=0), sample_size=10)
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 0.5\)"):
        EmbeddingReference.build(synthetic_texts(100, seed=0), alpha=0.7)


# -- the analyzer ----------------------------------------------------------------------------


def test_analyzer_section_and_signals(reference: EmbeddingReference) -> None:
    analyzer = EmbeddingDriftAnalyzer(reference, seed=3)
    same = analyzer.analyze(_window(synthetic_texts(200, seed=9)))
    assert same.section["statistic"] == "mmd2" and same.section["drift"] is False
    assert same.section["n_current"] == 200 and same.section["n_reference"] == 500
    assert same.section["embedder"] == EMBEDDER and same.section["alpha"] == 0.01
    assert same.signals["embedding.drift"] == 0.0
    assert same.signals["embedding.p_value"] == same.section["p_value"] >= 0.01
    moved = analyzer.analyze(
        _window(synthetic_texts(200, seed=9, extra=["refund", "battery", "charger", "screen"]))
    )
    assert moved.section["drift"] is True
    assert moved.signals == {
        "embedding.mmd2": moved.section["value"],
        "embedding.p_value": 1 / 201,
        "embedding.drift": 1.0,
    }
    assert moved.section["value"] > same.section["value"]
    assert json.dumps(moved.section)  # JSON-ready
    # one templated prompt sent over and over (a bot, a retry loop) is drift too
    repeated = analyzer.analyze(_window(synthetic_texts(1, seed=12) * 50))
    assert repeated.signals["embedding.drift"] == 1.0


def test_windows_without_enough_prompts_are_skipped(reference: EmbeddingReference) -> None:
    analyzer = EmbeddingDriftAnalyzer(reference)
    inputs = (*({"prompt": t} for t in synthetic_texts(19, seed=4)), [1.0, 2.0], {"x": 1})
    window = DriftWindow(np.zeros((21, 1)), inputs=inputs)
    assert len(window_prompts(window.inputs)) == MIN_PROMPTS - 1
    result = analyzer.analyze(window)
    assert result.signals == {}
    assert result.section["skipped"] == "19 prompts; needs 20"
    assert result.section["value"] is None and result.section["drift"] is None


def test_large_windows_are_subsampled(reference: EmbeddingReference) -> None:
    analyzer = EmbeddingDriftAnalyzer(reference, max_prompts=100)
    result = analyzer.judge(synthetic_texts(300, seed=5))
    assert result.n_current == 100 and result.n_reference == 500


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_permutations": 50}, "smallest p-value is 1/51, never below alpha 0.01"),
        ({"alpha": 0.0}, "alpha must lie in"),
        ({"max_prompts": 5}, "max_prompts must be at least 20"),
    ],
)
def test_analyzer_refuses_settings_that_cannot_work(
    reference: EmbeddingReference, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EmbeddingDriftAnalyzer(reference, **options)  # type: ignore[arg-type]


def test_a_200_prompt_window_costs_well_under_100_ms(reference: EmbeddingReference) -> None:
    analyzer = EmbeddingDriftAnalyzer(reference)
    window = _window(synthetic_texts(200, seed=6))
    analyzer.analyze(window)  # warm: the vectorizers and the projection matrix
    cpu = []
    for _ in range(5):
        start = time.thread_time()
        analyzer.analyze(window)
        cpu.append(time.thread_time() - start)
    assert statistics.median(cpu) < 0.1, f"median {1000 * statistics.median(cpu):.1f} ms CPU"


def test_an_alert_rule_on_the_drift_flag_exports_to_promql() -> None:
    promql = signal_promql("embedding.drift", "chat", 60)
    assert promql == (
        'infertrail_drift_window_signal{signal="embedding.drift",slice="",'
        'infertrail_model_name="chat"}'
    )
    (block,) = re.findall(r"```toml\n(.*?)```", _doc_section(), re.DOTALL)
    (rule,) = parse_rules(tomllib.loads(block)).rules
    assert rule.signal == "embedding.drift" and rule.for_windows == 2


def _doc_section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("\n## Prompt drift (LLM)\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def test_the_docs_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    (block,) = re.findall(r"```python\n(.*?)```", _doc_section(), re.DOTALL)
    exec(compile(block, str(DOC), "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("held-out reviews: drift False")
    assert out[1].startswith("movie reviews: drift True p 0.005")
    printed = re.findall(
        r"prints \(the test checks it\):\n\n```\n(.*?)```", _doc_section(), re.DOTALL
    )
    assert printed == ["\n".join(out) + "\n"]


# -- the LLM reference, the runtime, a DriftMonitor -------------------------------------------


def _inputs(prompt: str, tokens: int | None = 7) -> dict[str, object]:
    """What events.drift_inputs gives the drift monitor for one generation."""
    return {"prompt_chars": len(prompt), "prompt_tokens": tokens,
            "response_chars": 40, "response_tokens": 9, "prompt": prompt}  # fmt: skip


def test_llm_profile_reads_drift_inputs_and_omits_unknown_columns() -> None:
    prompts = synthetic_texts(100, seed=7)
    full = llm_profile(
        prompts, ["ok"] * 100, prompt_tokens=[5] * 100, response_tokens=[None, *[2] * 99]
    )
    assert full.feature_names == list(LLM_FEATURES) and full.kind == "tabular"
    np.testing.assert_array_equal(full.features(_inputs("hello")), [5.0, 7.0, 40.0, 9.0])
    np.testing.assert_array_equal(
        full.features(_inputs("hello", None))[:2], [5.0, np.nan]
    )  # a count the provider did not report is missing, not an error
    bare = llm_profile(prompts, prompt_tokens=[None] * 100)
    assert bare.feature_names == ["prompt_chars"]
    assert bare.features(_inputs("hi")).tolist() == [2.0]
    with pytest.raises(ValueError, match="prompt_tokens has 3 entries, prompts 100"):
        llm_profile(prompts, prompt_tokens=[1, 2, 3])
    with pytest.raises(ValueError, match=r"response_tokens\[0\] must be a count"):
        llm_profile(prompts, response_tokens=[-1] * 100)
    with pytest.raises(ValueError, match="responses must be 100 str"):
        llm_profile(prompts, ["x"])
    with pytest.raises(ValueError, match="prompts is empty"):
        llm_profile([])


def _llm_models(tmp_path: Path) -> Settings:
    s = Settings(data_dir=tmp_path / "data", telemetry_files=False)
    built = build_llm_reference(
        s.models_dir, LLM.name, synthetic_texts(600, seed=8), ["fine thanks"] * 600,
        prompt_tokens=[12] * 600, response_tokens=[3] * 600, model_sha256=LLM.sha256,
    )  # fmt: skip
    assert built.profile_file.is_file() and built.embedding_file.is_file()
    assert built.embedding_file == embedding_path(s.models_dir, LLM.name)
    assert built.embedding.n_texts == 600
    return s


def test_the_runtime_adds_the_analyzer_when_the_file_is_there(
    tmp_path: Path, clean_env: None
) -> None:
    s = _llm_models(tmp_path)
    profile = load_profile(s.models_dir / LLM.name / "profile.json", expected_sha256=LLM.sha256)
    names = [a.name for a in window_analyzers(s, profile)]
    assert names[-1] == "embedding"
    off = s.model_copy(update={"drift_embedding": False})
    assert "embedding" not in [a.name for a in window_analyzers(off, profile)]
    path = embedding_path(s.models_dir, LLM.name)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(EmbeddingFileError, match=f"embedding reference {path}"):
        window_analyzers(s, profile)
    path.unlink()
    assert "embedding" not in [a.name for a in window_analyzers(s, profile)]


def test_a_drift_monitor_judges_the_prompts_of_its_windows(tmp_path: Path, clean_env: None) -> None:
    """Generation events, windowed by events.drift_inputs: lengths and the user's words."""
    s = _llm_models(tmp_path)
    profile = load_profile(s.models_dir / LLM.name / "profile.json", expected_sha256=LLM.sha256)
    got: list[DriftReport] = []
    dm = DriftMonitor(
        profile, window_size=100, analyzers=window_analyzers(s, profile), listeners=[got.append]
    )
    try:
        shifted = synthetic_texts(100, seed=11, extra=["invoice", "refund", "password"] * 3)
        for prompt in [*synthetic_texts(100, seed=10), *shifted]:
            messages = [
                {"role": "system", "content": "You answer questions about our reviews."},
                {"role": "user", "content": prompt},
            ]
            ev = InferenceEvent(
                model=LLM, request_id="r", service="s", team="t", endpoint="/v1/chat",
                inputs=messages, input_size=len(prompt),
            )  # fmt: skip
            ev.generation = Generation(
                "chat", "infertrail", response_text="fine thanks", input_tokens=12,
                output_tokens=3,
            )  # fmt: skip
            dm(ev)
        assert dm.flush(10.0)
    finally:
        dm.close()
    assert dm.stats.analyzer_errors == 0 and dm.stats.feature_errors == 0 and len(got) == 2
    clean, moved = (r.sections["embedding"] for r in got)
    assert clean["drift"] is False and clean["n_current"] == 100
    assert moved["drift"] is True
    assert [r.signals["embedding.drift"] for r in got] == [0.0, 1.0]
    # prompt_chars counts the user's words only: with the system turn it would have drifted
    assert got[0].n_drifted == 0
