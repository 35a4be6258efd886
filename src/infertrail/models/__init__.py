"""The served models: credit, sentiment and digits (training, artifacts, reason codes), and
the optional demo LLM.

Each classifier is trained deterministically from data shipped in ``models/data`` and saved
with its sha256 and card (:mod:`.artifacts`), beside its monitoring references (the drift
profile and, for credit and digits, the CBPE performance estimator), which the builders below
rebuild for a saved model; the server loads them, the demo drives them. The demo LLM
(:mod:`.llm`, the ``[llm]`` extra) is trained by :func:`train_llm` within a wall-time budget,
with its drift reference (:func:`rebuild_llm_reference`).
"""

from collections.abc import Callable, Sequence
from pathlib import Path

from infertrail.events import ModelInfo
from infertrail.models import credit, digits, llm, sentiment
from infertrail.models.artifacts import LoadedModel, ModelArtifactError, load_model, save_model

__all__ = [
    "ESTIMATOR_BUILDERS",
    "LLM_REFERENCE_GENERATIONS",
    "LLM_TRAIN_SECONDS",
    "MIN_ANSWER_TOKENS",
    "PROFILE_BUILDERS",
    "REVIEW_SYSTEM_PROMPT",
    "TRAINERS",
    "LoadedModel",
    "ModelArtifactError",
    "llm_room",
    "load_model",
    "rebuild_llm_reference",
    "review_request",
    "save_model",
    "train_all",
    "train_llm",
]

#: The demo LLM's training budget in wall seconds (the loss is still falling there; the demo
#: wants the model in well under a minute).
LLM_TRAIN_SECONDS = 35.0
#: Reference generations behind the LLM's length profile: ~10 s on one thread, so that
#: training and reference take ~45 s.
LLM_REFERENCE_GENERATIONS = 200
#: The shortest answer room a reference or demo prompt must leave (longer reviews are skipped).
MIN_ANSWER_TOKENS = 16
#: What the demo's LLM traffic asks; the user's message is a review to write one like.
REVIEW_SYSTEM_PROMPT = "You write one-sentence reviews. Write one like the user's."

#: Every served model's deterministic trainer, by name (``infertrail train NAME``).
TRAINERS: dict[str, Callable[[Path], ModelInfo]] = {
    sentiment.NAME: sentiment.train,
    credit.NAME: credit.train,
    digits.NAME: digits.train,
}


#: How to rebuild a trained model's drift reference profile from its saved artifact.
PROFILE_BUILDERS: dict[str, Callable[[Path], Path]] = {
    sentiment.NAME: sentiment.rebuild_profile,
    credit.NAME: credit.rebuild_profile,
    digits.NAME: digits.rebuild_profile,
}

#: How to refit a trained classifier's performance estimator (``cbpe.json``) from its training
#: data, byte for byte as training saved it; sentiment has none.
ESTIMATOR_BUILDERS: dict[str, Callable[[Path], Path]] = {
    credit.NAME: credit.rebuild_estimator,
    digits.NAME: digits.rebuild_estimator,
}


def train_all(models_root: Path) -> list[ModelInfo]:
    """Train every served model into ``models_root``."""
    return [train(models_root) for train in TRAINERS.values()]


def review_request(review: str) -> list[dict[str, str]]:
    """The demo's LLM prompt for one review: the system prompt, then the review as the user's
    message. The user's message is what prompt drift embeds (``events.prompt_text``), so the
    reference and the traffic hold review sentences as the embedding was calibrated on."""
    return [
        {"role": "system", "content": REVIEW_SYSTEM_PROMPT},
        {"role": "user", "content": review},
    ]


def llm_room(model: llm.DemoLLM, review: str) -> int:
    """Tokens the context leaves for the answer to :func:`review_request` of ``review``."""
    return model.context - model.prompt_tokens(review_request(review))


def train_llm(models_root: Path, *, seconds: float = LLM_TRAIN_SECONDS) -> ModelInfo:
    """Train the demo LLM into ``<models_root>/demo-llm`` and build its drift reference."""
    llm.train(models_root / llm.NAME, seconds=seconds)
    rebuild_llm_reference(models_root)
    return llm.load(models_root / llm.NAME).info


def rebuild_llm_reference(
    models_root: Path, *, generations: int = LLM_REFERENCE_GENERATIONS
) -> Path:
    """The saved demo LLM's drift reference, beside it; returns the profile's path.

    Prompts are :func:`review_request` over the amazon and yelp training sentences: all of
    them make the prompt embedding reference (``embedding.npz``); the first ``generations``
    that leave ``MIN_ANSWER_TOKENS`` for an answer are answered (seeds 0, 1, ...) for the
    profile of prompt and answer lengths in characters and tokens (``profile.json``). Both
    carry the model's sha256, so the runtime refuses them for another model.
    """
    import torch  # the [llm] extra, which loading the model needs anyway

    from infertrail.drift.embedding import EmbeddingReference, embedding_path
    from infertrail.drift.llm_reference import llm_profile
    from infertrail.drift.profile import profile_path

    model = llm.load(models_root / llm.NAME)
    reviews: Sequence[str] = sentiment.split().train_texts
    answerable = [r for r in reviews if llm_room(model, r) >= MIN_ANSWER_TOKENS][:generations]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only contend (server/app.py)
    try:
        answered = [
            model.generate(review_request(r), seed=i, max_tokens=min(64, llm_room(model, r)))
            for i, r in enumerate(answerable)
        ]
    finally:
        torch.set_num_threads(threads)
    profile = llm_profile(
        answerable,
        [a.text for a in answered],
        prompt_tokens=[a.prompt_tokens for a in answered],
        response_tokens=[a.completion_tokens for a in answered],
        model_name=llm.NAME,
        model_sha256=model.info.sha256,
    )
    path = profile_path(models_root, llm.NAME)
    profile.save(path)
    EmbeddingReference.build(reviews, model_name=llm.NAME, model_sha256=model.info.sha256).save(
        embedding_path(models_root, llm.NAME)
    )
    return path
