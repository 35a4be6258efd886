"""The demo LLM: training, its sampling loop, token counts, embeddings, validation."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from infertrail.models import llm
from infertrail.models.artifacts import ModelArtifactError
from infertrail.models.sentiment import load_sentences, split

ASK = [{"role": "user", "content": "Write a positive review."}]


def test_training_record_and_identity(llm_dir: Path, model: llm.DemoLLM) -> None:
    record = json.loads((llm_dir / llm.TRAIN_FILE).read_text())
    assert record["steps"] > 10
    assert record["seconds"] <= 15.0 + 5.0  # the budget, plus one step's overshoot
    assert record["final_loss"] < record["first_loss"] - 2.0  # it learned something
    assert model.info.name == llm.NAME and model.info.version == llm.VERSION
    assert model.info.sha256 == record["sha256"]
    assert not list(llm_dir.parent.glob(".*"))  # no temp dir left behind


def test_training_is_deterministic_with_the_seed(tmp_path: Path) -> None:
    """Same seed and step count, same weights (byte for byte); another seed, others."""
    a = llm.train(tmp_path / "a", seconds=600, seed=1, max_steps=3)
    b = llm.train(tmp_path / "b", seconds=600, seed=1, max_steps=3)
    c = llm.train(tmp_path / "c", seconds=600, seed=2, max_steps=3)
    sha = [json.loads((d / llm.TRAIN_FILE).read_text())["sha256"] for d in (a, b, c)]
    assert sha[0] == sha[1] != sha[2]
    assert json.loads((a / llm.TRAIN_FILE).read_text())["steps"] == 3


def test_train_replaces_an_existing_model_and_ensure_does_not_retrain(tmp_path: Path) -> None:
    out = tmp_path / "m"
    llm.train(out, seconds=600, seed=1, max_steps=2)
    first = llm.ensure(out).info
    llm.train(out, seconds=600, seed=2, max_steps=2)
    second = llm.ensure(out).info
    assert first.sha256 != second.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_load_refuses_changed_weights_and_missing_files(tmp_path: Path, llm_dir: Path) -> None:
    with pytest.raises(ModelArtifactError, match=r"model\.safetensors is missing"):
        llm.load(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in llm_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    weights = copy / llm.WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match="weights were changed or replaced"):
        llm.load(copy)


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(RuntimeError, match=r"needs infertrail\[llm\].*pip install"):
        llm.train(Path("unused"))


def test_sampling_is_repeatable_with_a_seed(model: llm.DemoLLM) -> None:
    runs = [model.generate(ASK, seed=s, max_tokens=30) for s in (7, 7, 8, 9, 10)]
    assert runs[0] == runs[1]
    assert len({r.text for r in runs[1:]}) > 1  # other seeds sample other texts
    greedy = {model.generate(ASK, temperature=0, seed=s).text for s in (1, 2, 3)}
    assert len(greedy) == 1  # temperature 0 ignores the seed


def test_the_kv_cache_loop_matches_full_recomputation(model: llm.DemoLLM) -> None:
    """Greedy decoding through the cache equals re-running the whole sequence each step."""
    import torch

    ids = model._codec.render(ASK)
    expected = []
    for _ in range(12):
        with torch.inference_mode():
            logits = model._model(input_ids=torch.tensor([ids])).logits[0, -1]
        token = int(torch.argmax(logits))
        expected.append(token)
        if token in model._codec.special:
            break
        ids.append(token)
    text = b"".join(model._codec.token_bytes[t] for t in expected).decode("utf-8", "replace")
    out = model.generate(ASK, temperature=0, max_tokens=12)
    assert out.completion_tokens == len(expected)
    assert out.text == text.rstrip("\ufffd")


def test_top_p_near_zero_is_greedy(model: llm.DemoLLM) -> None:
    greedy = model.generate(ASK, temperature=0, max_tokens=20)
    for seed in (1, 2, 3):
        assert model.generate(ASK, top_p=1e-6, seed=seed, max_tokens=20) == greedy


def test_finish_reasons(model: llm.DemoLLM) -> None:
    room = model.context - model.prompt_tokens(ASK)
    ended = model.generate(ASK, temperature=0, max_tokens=room)
    assert ended.finish_reason == "stop" and ended.completion_tokens < room
    cut = model.generate(ASK, temperature=0, max_tokens=3)
    assert cut.finish_reason == "length" and cut.completion_tokens == 3
    assert ended.text.startswith(cut.text)
    # A stop string: the text ends before its first occurrence, which is not included.
    stop = ended.text[4:6]
    stopped = model.generate(ASK, temperature=0, max_tokens=room, stop=[stop, "never seen"])
    assert stopped.finish_reason == "stop"
    assert stopped.text == ended.text[: ended.text.index(stop)]
    assert stopped.completion_tokens <= ended.completion_tokens


def test_stream_pieces_are_the_text(model: llm.DemoLLM) -> None:
    s = model.stream(ASK, seed=3, max_tokens=40)
    assert s.finish_reason is None and s.prompt_tokens == model.prompt_tokens(ASK)
    pieces = list(s)
    assert all(pieces) and s.finish_reason in ("stop", "length")
    assert "".join(pieces) == model.generate(ASK, seed=3, max_tokens=40).text
    assert s.completion_tokens >= len(pieces)


def test_close_stops_generation_at_once(model: llm.DemoLLM) -> None:
    s = model.stream(ASK, temperature=0, max_tokens=100)
    assert model.generate(ASK, temperature=0, max_tokens=100).completion_tokens > 3
    next(s)
    sampled = s.completion_tokens
    assert 1 <= sampled <= 3
    s.close()
    with pytest.raises(StopIteration):
        next(s)
    assert s.completion_tokens == sampled and s.finish_reason is None


def test_an_unstarted_stream_samples_nothing(model: llm.DemoLLM) -> None:
    s = model.stream(ASK, max_tokens=10)
    s.close()
    assert list(s) == [] and s.completion_tokens == 0


def test_token_counts_follow_the_template(model: llm.DemoLLM) -> None:
    messages = [
        {"role": "system", "content": "You review things."},
        {"role": "user", "content": "Write a review of the café."},
        {"role": "assistant", "content": "Great coffee."},
        {"role": "user", "content": "Another, please."},
    ]
    contents = sum(model.count_tokens(m["content"]) for m in messages)
    # One role token per message, <|endoftext|> after the assistant's, the final <|assistant|>.
    assert model.prompt_tokens(messages) == contents + len(messages) + 1 + 1
    out = model.generate(messages, max_tokens=5, seed=0)
    assert out.prompt_tokens == model.prompt_tokens(messages)
    assert model.count_tokens("") == 0
    # A special-token string in a message is text: several tokens, not one forged turn.
    assert model.count_tokens("<|assistant|>") > 1


def test_stop_cut_holds_back_a_possible_stop() -> None:
    assert llm._stop_cut("Good foo", 0, ("food",)) == (5, False)  # "foo" may become "food"
    assert llm._stop_cut("Good food!", 5, ("food",)) == (5, True)
    assert llm._stop_cut("abc", 1, ()) == (3, False)
    assert llm._stop_cut("abc", 0, ("x", "bc")) == (1, True)


def test_embed_shape_norm_and_determinism(model: llm.DemoLLM) -> None:
    texts = ["Great phone.", "", "The food was cold and the service slow." * 30]
    e = model.embed(texts)
    assert e.shape == (3, 64) and e.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(model.embed(texts), e)
    # Batching does not change a text's embedding (padding is masked out).
    np.testing.assert_allclose(model.embed(texts[:1])[0], e[0], atol=1e-5)
    assert model.embed([]).shape == (0, 64)
    with pytest.raises(ValueError, match="sequence of strings"):
        model.embed("one string")


def test_imdb_embeds_farther_from_training_than_held_out_sentences(model: llm.DemoLLM) -> None:
    """The embeddings see the shift the demo injects: the centroid of imdb sentences lies far
    from the training sentences' centroid, the held-out amazon+yelp sentences' close to it."""
    data = split()
    centre = model.embed(data.train_texts).mean(axis=0)
    held_out = model.embed(data.test_texts)
    imdb = model.embed(load_sentences("imdb")[0][: len(data.test_texts)])
    near = float(np.linalg.norm(held_out.mean(axis=0) - centre))
    far = float(np.linalg.norm(imdb.mean(axis=0) - centre))
    assert far > 3 * near, (near, far)


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "must not be empty"),
        ("hello", "must be a list"),
        ({"role": "user", "content": "x"}, "must be a list"),
        (["hello"], r"messages\[0\] must be an object"),
        ([{"role": "robot", "content": "x"}], r"messages\[0\]\.role must be one of"),
        ([{"content": "x"}], r"messages\[0\]\.role must be one of .* got None"),
        ([{"role": "user", "content": 3}], r"messages\[0\]\.content must be a string, got int"),
        ([{"role": "user"}], r"messages\[0\]\.content must be a string, got NoneType"),
    ],
)
def test_bad_messages(model: llm.DemoLLM, messages: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.stream(messages)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        model.prompt_tokens(messages)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, r"max_tokens must be between 1 and \d+ .*got 0"),
        ({"max_tokens": 1000}, r"max_tokens must be between 1 and \d+ \(context 128"),
        ({"max_tokens": 2.0}, "max_tokens must be an integer"),
        ({"max_tokens": True}, "max_tokens must be an integer"),
        ({"temperature": -0.1}, "temperature must be between 0 and 2, got -0.1"),
        ({"temperature": 2.5}, "temperature must be between 0 and 2"),
        ({"temperature": "hot"}, "temperature must be a number"),
        ({"top_p": 0}, r"top_p must be in \(0, 1\], got 0"),
        ({"top_p": 1.5}, r"top_p must be in \(0, 1\]"),
        ({"seed": "1"}, "seed must be an integer or None"),
        ({"stop": ""}, "stop string must be a non-empty string"),
        ({"stop": ["a", 1]}, "stop string must be a non-empty string, got 1"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "at most 4 stop strings, got 5"),
    ],
)
def test_bad_sampling_arguments(model: llm.DemoLLM, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.stream(ASK, **kwargs)


def test_a_prompt_longer_than_the_context_is_refused(model: llm.DemoLLM) -> None:
    long = [{"role": "user", "content": "great food " * 100}]
    n = model.prompt_tokens(long)
    assert n > model.context
    with pytest.raises(ValueError, match=f"the prompt is {n} tokens; the model's context is 128"):
        model.stream(long, max_tokens=1)
    fits = [{"role": "user", "content": "great food " * 30}]
    room = model.context - model.prompt_tokens(fits)
    assert model.generate(fits, max_tokens=room, seed=0).completion_tokens <= room
    with pytest.raises(ValueError, match=f"between 1 and {room}"):
        model.stream(fits, max_tokens=room + 1)
