"""POST /v1/chat/completions, served by the demo service on loopback, driven by the real
``openai`` client: completions, streams, a client that hangs up, every refusal."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from infertrail.config import Settings
from infertrail.drift.embedding import EmbeddingReference, embedding_path
from infertrail.drift.profile import Profile, profile_path
from infertrail.models import llm, rebuild_llm_reference
from infertrail.server.app import DemoService, build_services, create_app, load_llm
from infertrail.server.llm import CHAT_COMPLETIONS_PATH
from infertrail.telemetry.setup import INFERENCE_LOG_FILE

ASK = [{"role": "user", "content": "Write a review like this one: the pasta was cold."}]


@dataclass
class Served:
    base: str
    services: DemoService
    client: openai.OpenAI
    http: httpx.Client

    def inference_lines(self, request_id: str, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        """The inference log lines of ``request_id`` (the event worker writes them)."""
        path = self.services.settings.telemetry_dir / INFERENCE_LOG_FILE
        deadline = time.monotonic() + timeout_s
        while True:
            self.services.monitor.flush()
            lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
            found = [x for x in lines if x.get("request_id") == request_id]
            if found or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, trained_models: Path, llm_dir: Path
) -> Iterator[Served]:
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith(("OTEL_", "INFERTRAIL_")) and var != "OTEL_SEMCONV_STABILITY_OPT_IN":
                mp.delenv(var)
        root = tmp_path_factory.mktemp("served")
        settings = Settings(
            data_dir=root / "data", metric_export_interval_ms=60_000, set_global_providers=False
        )
        settings.ensure_dirs()
        shutil.copytree(trained_models, settings.models_dir, dirs_exist_ok=True)
        shutil.copytree(llm_dir, settings.models_dir / llm.NAME)
        rebuild_llm_reference(settings.models_dir, generations=20)
        services = build_services(settings)
        assert services.llm is not None
        assert llm.NAME in services.runtime.drift  # its reference was found and checked
        config = uvicorn.Config(create_app(services), host="127.0.0.1", port=0, log_level="warning")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        try:
            with httpx.Client(base_url=base, timeout=30) as http:
                yield Served(base, services, client, http)
        finally:
            client.close()
            server.should_exit = True
            thread.join(timeout=30)
            services.close()


def test_a_completion_with_usage_and_its_audit_receipt(served: Served) -> None:
    raw = served.client.chat.completions.with_raw_response.create(
        model=llm.NAME,
        messages=ASK,
        seed=7,
        max_tokens=20,
        user="reviewer-1",  # type: ignore[arg-type]
    )
    c = raw.parse()
    assert c.object == "chat.completion" and c.model == llm.NAME
    choice = c.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason in ("stop", "length")
    assert c.usage is not None
    assert c.usage.prompt_tokens == served.services.llm.prompt_tokens(ASK)  # type: ignore[union-attr]
    assert 1 <= c.usage.completion_tokens <= 20
    assert c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens
    receipt = c.audit_receipt  # type: ignore[attr-defined]
    assert receipt["format"] == "infertrail-receipt/1" and receipt["seq"] >= 0
    # The same seed, the same answer: the route passes the sampling arguments through.
    again = served.client.chat.completions.create(
        model=llm.NAME,
        messages=ASK,
        seed=7,
        max_tokens=20,  # type: ignore[arg-type]
    )
    assert again.choices[0].message.content == choice.message.content
    rid = raw.headers["x-request-id"]
    assert c.id == f"chatcmpl-{rid}"
    (line,) = served.inference_lines(rid)
    gen = line["gen_ai"]
    assert gen["provider"] == "infertrail" and gen["response_model"] == llm.NAME
    assert (gen["input_tokens"], gen["output_tokens"]) == (
        c.usage.prompt_tokens,
        c.usage.completion_tokens,
    )
    assert gen["outcome"] in ("ok", "truncated") and not gen["stream"]
    # The audit record names the end user only by a pseudonym.
    audit = served.services.runtime.audit
    assert audit is not None
    (seq, record), *_ = audit.log.read(receipt["seq"], receipt["seq"] + 1)
    assert seq == receipt["seq"] and json.loads(record)["subject"]
    assert b"reviewer-1" not in record


def test_a_stream_joins_to_the_text_and_ends_with_usage(served: Served) -> None:
    # A seed whose answer is not empty (a briefly trained model sometimes ends at once).
    seed, whole = next(
        (seed, c)
        for seed in range(50)
        if (
            c := served.client.chat.completions.create(
                model=llm.NAME,
                messages=ASK,
                seed=seed,
                max_completion_tokens=30,  # type: ignore[arg-type]
            )
        )
        .choices[0]
        .message.content
    )
    t0 = time.perf_counter()
    stream = served.client.chat.completions.create(
        model=llm.NAME,
        messages=ASK,  # type: ignore[arg-type]
        seed=seed,
        max_completion_tokens=30,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    elapsed_ms = (time.perf_counter() - t0) * 1000
    assert chunks[0].choices[0].delta.role == "assistant"
    assert any(c.choices and c.choices[0].delta.content for c in chunks)
    finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1 and finish[0] is chunks[-2]
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.audit_receipt["format"] == "infertrail-receipt/1"  # type: ignore[attr-defined]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert last.usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    rid = chunks[0].id.removeprefix("chatcmpl-")
    (line,) = served.inference_lines(rid)
    assert 0 < line["gen_ai"]["ttft_ms"] < elapsed_ms
    assert line["gen_ai"]["stream"] and line["gen_ai"]["outcome"] in ("ok", "truncated")
    assert line["gen_ai"]["output_tokens"] == last.usage.completion_tokens


def test_without_include_usage_the_receipt_rides_on_the_finish_chunk(served: Served) -> None:
    with served.http.stream(
        "POST",
        CHAT_COMPLETIONS_PATH,
        json={"model": llm.NAME, "messages": ASK, "stream": True, "max_tokens": 5, "seed": 1},
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    data = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert all("usage" not in d for d in data)
    assert data[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert data[-1]["audit_receipt"]["seq"] >= 0
    assert all("audit_receipt" not in d for d in data[:-1])


def test_a_client_that_hangs_up_is_recorded_as_cancelled(served: Served) -> None:
    # temperature 2: near-uniform sampling rarely ends early, so the stream is still running
    stream = served.client.chat.completions.create(
        model=llm.NAME,
        messages=ASK,  # type: ignore[arg-type]
        seed=5,
        temperature=2.0,
        stream=True,
    )
    seen = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            seen.append(chunk)
        if len(seen) == 3:
            break
    stream.close()
    rid = seen[0].id.removeprefix("chatcmpl-")
    (line,) = served.inference_lines(rid)
    gen = line["gen_ai"]
    assert gen["outcome"] == "cancelled", gen
    limit = served.services.llm.context - served.services.llm.prompt_tokens(ASK)  # type: ignore[union-attr]
    assert 3 <= gen["output_tokens"] < limit, gen
    assert gen["finish_reasons"] == []


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        ({"messages": ASK}, "model", "Missing required parameter: 'model'"),
        ({"model": llm.NAME}, "messages", "Missing required parameter: 'messages'"),
        ({"model": llm.NAME, "messages": []}, "messages", "at least 1 item"),
        (
            {"model": llm.NAME, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
            "'system', 'user' or 'assistant'",
        ),
        (
            {"model": llm.NAME, "messages": [{"role": "user", "content": 5}]},
            "messages[0].content",
            "must be a string or a list of text parts, got int",
        ),
        (
            {
                "model": llm.NAME,
                "messages": [{"role": "user", "content": [{"type": "image_url", "x": 1}]}],
            },
            "messages[0].content",
            "part 0 is not a text part",
        ),
        ({"model": llm.NAME, "messages": ASK, "temperature": 2.5}, "temperature", "less than"),
        ({"model": llm.NAME, "messages": ASK, "top_p": 0}, "top_p", "greater than 0"),
        ({"model": llm.NAME, "messages": ASK, "n": 2}, "n", "n must be 1"),
        ({"model": llm.NAME, "messages": ASK, "max_tokens": 0}, "max_tokens", "greater than"),
        ({"model": llm.NAME, "messages": ASK, "seed": "7"}, "seed", "valid integer"),
        ({"model": llm.NAME, "messages": ASK, "stop": ["a"] * 5}, "stop", "at most 4 stop"),
        ({"model": llm.NAME, "messages": ASK, "stop": [""]}, "stop", "non-empty string"),
        (
            {"model": llm.NAME, "messages": ASK, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when 'stream' is enabled",
        ),
        (
            {"model": llm.NAME, "messages": ASK, "max_tokens": 5, "max_completion_tokens": 5},
            "max_tokens",
            "not both",
        ),
        (
            {"model": llm.NAME, "messages": ASK, "logprobs": True},
            "logprobs",
            "Unrecognized request argument supplied: logprobs",
        ),
        (
            {"model": llm.NAME, "messages": ASK, "user": "bad user id!"},
            "user",
            "user must be 1-128 characters",
        ),
    ],
)
def test_each_bad_input_is_a_400_naming_it(
    served: Served, body: dict[str, Any], param: str, message: str
) -> None:
    r = served.http.post(CHAT_COMPLETIONS_PATH, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert message in error["message"], error
    assert "bad user id" not in r.text  # the end user's id is never echoed


def test_refusals_raise_the_openai_exception_with_the_message(served: Served) -> None:
    with pytest.raises(openai.NotFoundError, match=r"model `gpt-4o` does not exist") as nf:
        served.client.chat.completions.create(model="gpt-4o", messages=ASK)  # type: ignore[arg-type]
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError, match="n must be 1") as n:
        served.client.chat.completions.create(model=llm.NAME, messages=ASK, n=3)  # type: ignore[arg-type]
    assert n.value.param == "n"


def test_a_prompt_longer_than_the_context_is_context_length_exceeded(served: Served) -> None:
    model = served.services.llm
    assert model is not None
    long = [{"role": "user", "content": "good food " * 200}]
    prompt = model.prompt_tokens(long)
    with pytest.raises(openai.BadRequestError) as e:
        served.client.chat.completions.create(model=llm.NAME, messages=long)  # type: ignore[arg-type]
    assert e.value.code == "context_length_exceeded"
    assert f"maximum context length is {model.context} tokens" in e.value.message
    assert f"your messages resulted in {prompt} tokens" in e.value.message
    fits = model.context - model.prompt_tokens(ASK)
    with pytest.raises(
        openai.BadRequestError,
        match=rf"\({model.prompt_tokens(ASK)} in the messages, {fits + 1} in the completion\)",
    ) as e:
        served.client.chat.completions.create(model=llm.NAME, messages=ASK, max_tokens=fits + 1)  # type: ignore[arg-type]
    assert e.value.code == "context_length_exceeded"
    ok = served.client.chat.completions.create(
        model=llm.NAME,
        messages=ASK,
        max_tokens=fits,
        seed=0,  # type: ignore[arg-type]
    )
    assert ok.usage is not None and ok.usage.completion_tokens <= fits


def test_refusals_are_counted_never_recorded_as_decisions(served: Served) -> None:
    audit = served.services.runtime.audit
    assert audit is not None
    served.services.monitor.flush()
    audit.log.flush()
    before = audit.log.size
    r = served.http.post(CHAT_COMPLETIONS_PATH, json={"model": llm.NAME, "messages": ASK, "n": 2})
    assert r.status_code == 400
    (line,) = served.inference_lines(r.headers["x-request-id"])
    assert line["status"] == "error" and line["error_type"] == "invalid_input"
    assert "gen_ai" not in line
    served.services.monitor.flush()
    audit.log.flush()
    assert audit.log.size == before


def test_the_llm_drift_reference_is_built_for_the_saved_model(
    served: Served, llm_dir: Path
) -> None:
    root = served.services.settings.models_dir
    sha = served.services.llm.info.sha256  # type: ignore[union-attr]
    profile = Profile.load(profile_path(root, llm.NAME))
    assert profile.model_sha256 == sha and profile.model_name == llm.NAME
    assert set(profile.feature_names) == {
        "prompt_chars",
        "prompt_tokens",
        "response_chars",
        "response_tokens",
    }
    reference = EmbeddingReference.load(embedding_path(root, llm.NAME), expected_sha256=sha)
    assert reference.n_texts == 1600  # every amazon and yelp training sentence


def test_an_untrained_llm_is_not_served_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    with caplog.at_level("INFO", logger="infertrail.server"):
        assert load_llm(settings) is None
    (record,) = [r for r in caplog.records if r.name == "infertrail.server"]
    assert record.levelname == "INFO"
    assert "is not trained (infertrail train demo-llm)" in record.getMessage()
