"""The demo LLM: a tiny GPT-2 trained on the shipped review sentences, served on CPU.

It exists so the demo can show generative inference (streamed tokens, token counts, prompt
embedding drift) without downloading anything: :func:`train` builds a byte-level BPE tokenizer
and a 2-layer GPT-2 (about 236k parameters) from the amazon and yelp training sentences, on one
thread, in under a minute. Its answers are short review-like sentences, not good ones.

Chat template: every message is its role's special token followed by its content; an
assistant message ends with ``<|endoftext|>``; the prompt ends with ``<|assistant|>``, after
which the model writes and ends with ``<|endoftext|>``. Training examples are rendered by the
same function (a user asking for a positive, negative or any review, sometimes after a system
message), so served prompts look like training text. Special-token strings inside a message's
content are encoded as plain text: a user cannot forge a turn.

torch, transformers and tokenizers (the ``[llm]`` extra) are imported inside the functions that
need them, so this module imports without them.
"""

from __future__ import annotations

import codecs
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infertrail.events import ModelInfo
from infertrail.models.artifacts import ModelArtifactError, sha256_file
from infertrail.models.sentiment import split

if TYPE_CHECKING:
    import numpy as np

NAME = "demo-llm"
VERSION = "1.0.0"
ROLES = ("system", "user", "assistant")
MAX_STOP = 4  # stop strings per request, as OpenAI's API allows
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
TRAIN_FILE = "train.json"
EOS = "<|endoftext|>"
_ROLE_TOKENS = {role: f"<|{role}|>" for role in ROLES}
_SPECIAL = (EOS, *_ROLE_TOKENS.values())
_VOCAB_SIZE = 2000
_N_POSITIONS = 128
_SYSTEM_PROMPT = "You write one-sentence reviews of products and restaurants."
_ASKS = {
    0: ("Write a negative review.", "Write a bad review.", "Write a review."),
    1: ("Write a positive review.", "Write a good review.", "Write a review."),
}
_BATCH = 32
_LEARNING_RATE = 3e-3
_EMBED_BATCH = 64
_INSTALL_HINT = 'pip install "infertrail[llm]"'


def _require() -> tuple[Any, Any, Any]:
    """torch, transformers and tokenizers, or the error saying how to get them."""
    try:
        import tokenizers
        import torch
        import transformers
    except ImportError as exc:
        raise RuntimeError(
            f"the demo LLM needs infertrail[llm] (torch, transformers, tokenizers): "
            f"{_INSTALL_HINT} ({exc})"
        ) from exc
    return torch, transformers, tokenizers


Message = Mapping[str, str]


def _bytes_of_symbols() -> dict[str, int]:
    """GPT-2's byte-level alphabet, reversed: each symbol of a token string to its byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return {s: b for b, s in symbols.items()}


class _Codec:
    """Token ids to and from text, with the chat template (tokenizers' fast BPE)."""

    def __init__(self, tokenizer: Any) -> None:
        tokenizer.encode_special_tokens = True  # "<|user|>" in a message is text, not a turn
        self.tokenizer = tokenizer
        self.eos = tokenizer.token_to_id(EOS)
        self.roles = {role: tokenizer.token_to_id(t) for role, t in _ROLE_TOKENS.items()}
        self.special = frozenset([self.eos, *self.roles.values()])
        to_byte = _bytes_of_symbols()
        vocab = tokenizer.get_vocab(with_added_tokens=True)
        self.token_bytes = [b""] * tokenizer.get_vocab_size(with_added_tokens=True)
        for token, i in vocab.items():
            if i not in self.special:
                self.token_bytes[i] = bytes(to_byte[c] for c in token)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def render(self, messages: Sequence[Message], answer: str | None = None) -> list[int]:
        """The template: the prompt's ids, and with ``answer`` the whole training example."""
        ids: list[int] = []
        for m in messages:
            ids += [self.roles[m["role"]], *self.encode(m["content"])]
            if m["role"] == "assistant":
                ids.append(self.eos)
        ids.append(self.roles["assistant"])
        if answer is not None:
            ids += [*self.encode(answer), self.eos]
        return ids


def _train_tokenizer(texts: Sequence[str]) -> Any:
    _, _, tokenizers = _require()
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=list(_SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def _examples(
    codec: _Codec, texts: Sequence[str], labels: Sequence[int], rng: random.Random
) -> list[list[int]]:
    """One chat example per sentence: a request for a review of its label, then the sentence."""
    out: list[list[int]] = []
    for text, label in zip(texts, labels, strict=True):
        messages = [{"role": "user", "content": rng.choice(_ASKS[label])}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": _SYSTEM_PROMPT})
        out.append(codec.render(messages, answer=text)[:_N_POSITIONS])
    return out


def train(out_dir: Path, *, seconds: float = 45.0, seed: int = 0, max_steps: int = 3000) -> Path:
    """Train the tokenizer and the model on the sentiment training split; save to ``out_dir``.

    Bounded by ``seconds`` of wall time and ``max_steps`` optimizer steps, whichever comes
    first, on one thread (restored afterwards). The same seed and step count give the same
    weights; a wall-time budget may stop at a different step on a busier machine, so pass a
    large ``seconds`` to pin the steps. ``out_dir`` is replaced atomically: written beside it,
    then renamed, so a reader never sees half a model. ``train.json`` records the steps, the
    seconds, the first and final loss and the weights' sha256.
    """
    if seconds <= 0 or max_steps < 1:
        raise ValueError(f"seconds must be > 0 and max_steps >= 1, got {seconds}, {max_steps}")
    torch, transformers, _ = _require()
    data = split()
    tok = _train_tokenizer(data.train_texts)
    codec = _Codec(tok)
    rng = random.Random(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        config = transformers.GPT2Config(
            vocab_size=tok.get_vocab_size(with_added_tokens=True),
            n_positions=_N_POSITIONS,
            n_embd=64,
            n_layer=2,
            n_head=2,
            bos_token_id=codec.eos,
            eos_token_id=codec.eos,
            pad_token_id=codec.eos,
        )
        model = transformers.GPT2LMHeadModel(config)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=_LEARNING_RATE, weight_decay=0.01)
        examples: list[list[int]] = []
        losses: list[float] = []
        start = time.monotonic()
        steps = 0
        while steps < max_steps and time.monotonic() - start < seconds:
            if len(examples) < _BATCH:  # a new epoch: fresh prompts, fresh order
                examples = _examples(codec, data.train_texts, data.train_labels, rng)
                rng.shuffle(examples)
            batch, examples = examples[:_BATCH], examples[_BATCH:]
            width = max(map(len, batch))
            ids = torch.full((len(batch), width), codec.eos, dtype=torch.long)
            labels = torch.full((len(batch), width), -100, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, example in enumerate(batch):
                ids[row, : len(example)] = torch.tensor(example)
                labels[row, : len(example)] = ids[row, : len(example)]
                mask[row, : len(example)] = 1
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            steps += 1
        elapsed = time.monotonic() - start
    finally:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.eval()
    model.save_pretrained(tmp)
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=EOS
    ).save_pretrained(tmp)
    tail = losses[-20:]  # the last steps' mean: one batch's loss is noisy
    record = {
        "name": NAME,
        "version": VERSION,
        "seed": seed,
        "steps": steps,
        "seconds": round(elapsed, 2),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_sentences": len(data.train_texts),
        "first_loss": round(losses[0], 4),
        "final_loss": round(sum(tail) / len(tail), 4),
        "sha256": sha256_file(tmp / WEIGHTS_FILE),
    }
    (tmp / TRAIN_FILE).write_text(json.dumps(record, indent=2) + "\n")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir


def load(path: Path) -> DemoLLM:
    """Load a trained model after checking its weights against the sha256 ``train`` recorded."""
    torch, transformers, tokenizers = _require()
    path = Path(path)
    for name in (WEIGHTS_FILE, TOKENIZER_FILE, TRAIN_FILE):
        if not (path / name).is_file():
            raise ModelArtifactError(f"{path / name} is missing: train the demo LLM first")
    record = json.loads((path / TRAIN_FILE).read_text())
    digest = sha256_file(path / WEIGHTS_FILE)
    if digest != record.get("sha256"):
        raise ModelArtifactError(
            f"{path / WEIGHTS_FILE} has sha256 {digest}, {TRAIN_FILE} recorded "
            f"{record.get('sha256')}: the weights were changed or replaced"
        )
    model = transformers.GPT2LMHeadModel.from_pretrained(path, local_files_only=True)
    model.eval()
    tok = tokenizers.Tokenizer.from_file(str(path / TOKENIZER_FILE))
    return DemoLLM(model, tok, ModelInfo(NAME, VERSION, digest), torch)


def ensure(out_dir: Path, *, seconds: float = 45.0) -> DemoLLM:
    """The model saved in ``out_dir``, trained there first if it is not."""
    if not (Path(out_dir) / TRAIN_FILE).is_file():
        train(out_dir, seconds=seconds)
    return load(out_dir)


@dataclass
class Generated:
    """A finished completion."""

    text: str
    finish_reason: str  # "stop" (end of text or a stop string) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int


class Stream:
    """A completion being generated: iterate for its text pieces, then read its outcome.

    Each piece is the text of one or more sampled tokens, only ever whole characters (a token
    ending inside a UTF-8 sequence waits for the next; at ``max_tokens`` an unfinished character
    is dropped). ``close()`` stops the generation at once:
    no token is sampled after it (the work runs only inside ``next()``, no thread).
    ``finish_reason`` is None until the stream ends by itself; ``completion_tokens`` counts the
    sampled tokens, those held back or cut by a stop string included (what the model computed).
    """

    def __init__(
        self, prompt_tokens: int, run: Callable[[Stream], Generator[str, None, None]]
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self._gen = run(self)

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> str:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


@dataclass(frozen=True)
class _Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stops: tuple[str, ...]


class DemoLLM:
    """A loaded demo LLM: token counts, streamed generation, prompt embeddings."""

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, torch: Any) -> None:
        self.info = info
        self.context = int(model.config.n_positions)
        self._model = model
        self._codec = _Codec(tokenizer)
        self._torch = torch

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as message content (special-token strings count as text)."""
        return len(self._codec.encode(text))

    def prompt_tokens(self, messages: Sequence[Message]) -> int:
        """Tokens of the templated prompt: role tokens, contents, the final ``<|assistant|>``."""
        return len(self._codec.render(_checked_messages(messages)))

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Stream:
        """Generate token by token from the chat ``messages``; arguments are checked here.

        ``temperature`` 0 is greedy; ``top_p`` keeps the smallest set of most likely tokens
        whose probabilities reach it. ``seed`` makes the sampling repeatable (None: random).
        A prompt longer than the context is refused, never truncated: the audit trail records
        the messages as sent, and a model that saw only part of them would make it wrong.
        Generation ends at ``<|endoftext|>`` (or any role token: a new turn), at a stop string
        (not included in the text) or after ``max_tokens``.
        """
        prompt = self._codec.render(_checked_messages(messages))
        sampling = self._checked_sampling(len(prompt), max_tokens, temperature, top_p, seed, stop)
        return Stream(len(prompt), lambda s: self._run(s, prompt, sampling))

    def generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
    ) -> Generated:
        """The whole completion of :meth:`stream`."""
        s = self.stream(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop=stop,
        )
        text = "".join(s)
        return Generated(text, s.finish_reason or "stop", s.prompt_tokens, s.completion_tokens)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Each text's mean-pooled last hidden state, L2-normalised: shape (len(texts), d).

        A text is embedded after ``<|endoftext|>`` (so an empty one has a token) and cut to
        the context's first tokens; batched, without gradients.
        """
        import numpy as np

        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise ValueError("texts must be a sequence of strings")
        torch, codec = self._torch, self._codec
        out = np.empty((len(texts), self._model.config.n_embd), dtype=np.float32)
        for at in range(0, len(texts), _EMBED_BATCH):
            rows = [
                [codec.eos, *codec.encode(t)][: self.context] for t in texts[at : at + _EMBED_BATCH]
            ]
            width = max(map(len, rows))
            ids = torch.full((len(rows), width), codec.eos, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for i, row in enumerate(rows):
                ids[i, : len(row)] = torch.tensor(row)
                mask[i, : len(row)] = 1
            with torch.inference_mode():
                hidden = self._model.transformer(input_ids=ids, attention_mask=mask)
            m = mask.unsqueeze(-1).to(hidden.last_hidden_state.dtype)
            mean = (hidden.last_hidden_state * m).sum(1) / m.sum(1)
            out[at : at + len(rows)] = torch.nn.functional.normalize(mean, dim=-1).numpy()
        return out

    def _checked_sampling(
        self,
        prompt_len: int,
        max_tokens: int,
        temperature: float,
        top_p: float,
        seed: int | None,
        stop: str | Sequence[str] | None,
    ) -> _Sampling:
        room = self.context - prompt_len
        if room < 1:
            raise ValueError(
                f"the prompt is {prompt_len} tokens; the model's context is {self.context} "
                f"tokens, which leaves no room for a completion"
            )
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise ValueError(f"max_tokens must be an integer, got {max_tokens!r}")
        if not 1 <= max_tokens <= room:
            raise ValueError(
                f"max_tokens must be between 1 and {room} (context {self.context} tokens "
                f"- prompt {prompt_len}), got {max_tokens}"
            )
        if isinstance(temperature, bool) or not isinstance(temperature, int | float):
            raise ValueError(f"temperature must be a number, got {temperature!r}")
        if not 0.0 <= temperature <= 2.0:
            raise ValueError(f"temperature must be between 0 and 2, got {temperature}")
        if isinstance(top_p, bool) or not isinstance(top_p, int | float):
            raise ValueError(f"top_p must be a number, got {top_p!r}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, got {len(stops)}")
        for s in stops:
            if not isinstance(s, str) or not s:
                raise ValueError(f"a stop string must be a non-empty string, got {s!r}")
        return _Sampling(max_tokens, float(temperature), float(top_p), seed, stops)

    def _run(self, out: Stream, prompt: list[int], p: _Sampling) -> Generator[str, None, None]:
        """The sampling loop behind :meth:`stream` (a generator: it runs only when pulled)."""
        torch, codec = self._torch, self._codec
        rng = torch.Generator()
        if p.seed is None:
            rng.seed()
        else:
            rng.manual_seed(p.seed)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text, sent = "", 0  # the completion so far; how much of it was yielded
        ids = torch.tensor([prompt])
        cache = None  # the KV cache: after the prompt, each step feeds only the new token
        while out.completion_tokens < p.max_tokens:
            with torch.inference_mode():
                result = self._model(input_ids=ids, cache=cache, use_cache=True)
            cache = result.cache
            token = self._sample(result.logits[0, -1], p, rng)
            out.completion_tokens += 1
            if token in codec.special:
                break
            text += utf8.decode(codec.token_bytes[token])
            end, hit = _stop_cut(text, sent, p.stops)
            if end > sent:
                yield text[sent:end]
                sent = end
            if hit:
                out.finish_reason = "stop"
                return
            ids = torch.tensor([[token]])
        else:
            out.finish_reason = "length"
            if len(text) > sent:  # what a stop string's prefix held back (never a broken char)
                yield text[sent:]
            return
        out.finish_reason = "stop"
        if len(text) > sent:
            yield text[sent:]

    def _sample(self, logits: Any, p: _Sampling, rng: Any) -> int:
        torch = self._torch
        if p.temperature == 0.0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / p.temperature, dim=-1)
        if p.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            # Keep a token while the mass before it is below top_p: the first always stays.
            keep = torch.cumsum(sorted_p, 0) - sorted_p < p.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
        return int(torch.multinomial(probs, 1, generator=rng))


def _stop_cut(text: str, sent: int, stops: tuple[str, ...]) -> tuple[int, bool]:
    """How far ``text`` may be yielded, and whether a stop string ends it there.

    Text that could still become a stop string (a suffix that is a stop's prefix) is held
    back, so no stop string is ever yielded in part.
    """
    if not stops:
        return len(text), False
    hits = [i for i in (text.find(s, sent) for s in stops) if i >= 0]
    if hits:
        return min(hits), True
    held = max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
    return max(sent, len(text) - held), False


def _checked_messages(messages: Sequence[Message]) -> list[Message]:
    """The messages if they are a non-empty list of {"role", "content"}; else a ValueError."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role', 'content'} objects")
    if not messages:
        raise ValueError("messages must not be empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"messages[{i}] must be an object, got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise ValueError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise ValueError(
                f"messages[{i}].content must be a string, got {type(content).__name__}"
            )
    return list(messages)
