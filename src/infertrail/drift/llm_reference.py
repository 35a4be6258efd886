"""The drift reference of an LLM model, from reference generations: two files beside the model.

An LLM's window rows are what ``events.drift_inputs`` measures from each generation:
``prompt_chars``, ``prompt_tokens``, ``response_chars``, ``response_tokens`` (and the prompt
text). :func:`build_llm_reference` turns reference generations into

- a tabular :class:`~infertrail.drift.profile.Profile` over those numbers (univariate drift,
  data quality, multivariate statistics), whose ``features(drift_inputs)`` reads them by name,
  saved as ``profile.json`` (+ ``.npz``): :func:`~infertrail.drift.profile.profile_path`;
- an :class:`~infertrail.drift.embedding.EmbeddingReference` of the prompts (prompt drift),
  saved as ``embedding.npz`` beside it, where the runtime finds both (runtime/drift.py).

A column the reference has no value for (token counts not reported, no responses) is left out
of the profile, so that live rows are not judged on a feature the reference never had.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infertrail.drift.build import build_tabular_profile
from infertrail.drift.embedding import DEFAULT_SAMPLE_SIZE, EmbeddingReference, embedding_path
from infertrail.drift.profile import Profile, profile_path

__all__ = ["LLM_FEATURES", "LlmReference", "build_llm_reference", "llm_profile"]

#: The numeric features of a generation, as ``events.drift_inputs`` names them.
LLM_FEATURES = ("prompt_chars", "prompt_tokens", "response_chars", "response_tokens")


@dataclass(frozen=True)
class LlmReference:
    """What :func:`build_llm_reference` built and where it saved it."""

    profile: Profile
    embedding: EmbeddingReference
    profile_file: Path
    embedding_file: Path


def _counts(values: Sequence[int | None] | None, n: int, what: str) -> list[float] | None:
    """Token counts as floats (None: missing); None when not given or none is known."""
    if values is None:
        return None
    if len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries, prompts {n}")
    out: list[float] = []
    for i, v in enumerate(values):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{what}[{i}] must be a count (int >= 0) or None, got {v!r}")
        out.append(np.nan if v is None else float(v))
    return None if all(np.isnan(out)) else out


def llm_profile(
    prompts: Sequence[str],
    responses: Sequence[str] | None = None,
    *,
    prompt_tokens: Sequence[int | None] | None = None,
    response_tokens: Sequence[int | None] | None = None,
    model_name: str = "",
    model_sha256: str = "",
    seed: int = 0,
) -> Profile:
    """The tabular profile of reference generations over :data:`LLM_FEATURES`: the lengths of
    ``prompts`` (the user-visible prompt text, as ``events.prompt_text`` gives it) and
    ``responses`` in characters, and the token counts given (None where unknown)."""
    if isinstance(prompts, str):
        raise ValueError("prompts must be a sequence of str, not a single string")
    n = len(prompts)
    if n == 0:
        raise ValueError("prompts is empty; a reference needs reference generations")
    if not all(isinstance(p, str) for p in prompts):
        raise ValueError("prompts must all be str")
    if responses is not None and (
        len(responses) != n or not all(isinstance(r, str) for r in responses)
    ):
        raise ValueError(f"responses must be {n} str, one per prompt")
    columns: dict[str, list[float] | None] = {
        "prompt_chars": [float(len(p)) for p in prompts],
        "prompt_tokens": _counts(prompt_tokens, n, "prompt_tokens"),
        "response_chars": None if responses is None else [float(len(r)) for r in responses],
        "response_tokens": _counts(response_tokens, n, "response_tokens"),
    }
    kept = {name: values for name, values in columns.items() if values is not None}
    return build_tabular_profile(
        np.array(list(kept.values()), dtype=np.float64).T,
        list(kept),
        model_name=model_name,
        model_sha256=model_sha256,
        seed=seed,
    )


def build_llm_reference(
    models_dir: str | os.PathLike[str],
    model_name: str,
    prompts: Sequence[str],
    responses: Sequence[str] | None = None,
    *,
    prompt_tokens: Sequence[int | None] | None = None,
    response_tokens: Sequence[int | None] | None = None,
    model_sha256: str = "",
    embedding_sample_size: int = DEFAULT_SAMPLE_SIZE,
    seed: int = 0,
) -> LlmReference:
    """Build the profile and the prompt embedding reference of ``model_name`` from reference
    generations and save both where the runtime looks: ``<models_dir>/<name>/profile.json``
    and ``embedding.npz``. ``model_sha256``: the served artifact's identity (``ModelInfo``),
    which the runtime checks both files against."""
    profile = llm_profile(
        prompts,
        responses,
        prompt_tokens=prompt_tokens,
        response_tokens=response_tokens,
        model_name=model_name,
        model_sha256=model_sha256,
        seed=seed,
    )
    embedding = EmbeddingReference.build(
        prompts,
        sample_size=embedding_sample_size,
        seed=seed,
        model_name=model_name,
        model_sha256=model_sha256,
    )
    profile_file = profile_path(Path(models_dir), model_name)
    embedding_file = embedding_path(models_dir, model_name)
    profile.save(profile_file)
    embedding.save(embedding_file)
    return LlmReference(profile, embedding, profile_file, embedding_file)
