"""The sentiment demo model: TF-IDF + logistic regression on labelled review sentences."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline

from infertrail.drift import Profile, build_text_profile, profile_path
from infertrail.drift.calibration import profile_of_rows
from infertrail.events import ModelInfo
from infertrail.models.artifacts import LoadedModel, load_model, save_model

NAME = "sentiment"
PROFILE_FOLDS = 5  # folds of the reference profile's out-of-fold predictions
VERSION = "1.0.0"
TRAIN_SOURCES = ("amazon", "yelp")
SHIFTED_SOURCE = "imdb"
LABELS = ("negative", "positive")
_FILES = {
    "amazon": "amazon_cells_labelled.txt",
    "yelp": "yelp_labelled.txt",
    "imdb": "imdb_labelled.txt",
}


def load_sentences(source: str) -> tuple[list[str], list[int]]:
    """The labelled sentences of one source (amazon, yelp or imdb), in file order."""
    try:
        name = _FILES[source]
    except KeyError:
        raise ValueError(f"unknown source {source!r}; valid: {', '.join(_FILES)}") from None
    text = (resources.files("infertrail.models") / "data" / "sentiment" / name).read_text("utf-8")
    texts, labels = [], []
    for line in text.splitlines():
        sentence, _, label = line.rpartition("\t")
        if sentence:
            texts.append(sentence.strip())
            labels.append(int(label))
    return texts, labels


@dataclass(frozen=True)
class SentimentSplit:
    train_texts: list[str]
    train_labels: list[int]
    test_texts: list[str]
    test_labels: list[int]


def split() -> SentimentSplit:
    """Deterministic 80/20 split of the training sources (the 20% is clean held-out traffic)."""
    texts: list[str] = []
    labels: list[int] = []
    for src in TRAIN_SOURCES:
        t, y = load_sentences(src)
        texts += t
        labels += y
    tr_x, te_x, tr_y, te_y = train_test_split(
        texts, labels, test_size=0.2, random_state=7, stratify=labels
    )
    return SentimentSplit(tr_x, tr_y, te_x, te_y)


def reference_profile(
    pipeline: Pipeline, info: ModelInfo, texts: list[str], labels: list[int]
) -> Profile:
    """The text reference of the sentiment training sentences, each judged as if it were new.

    Measured against the vocabulary it was built from, every training sentence has an OOV rate
    of 0, and any new in-distribution sentence would look drifted. So a sentence's OOV rate is
    taken against the vocabulary of all *other* training sentences (exact leave-one-out for the
    model's ``min_df=1`` vocabulary: a token is out of it when no other sentence has it), and
    its label and confidence come from a model fitted on the other folds: what the served model
    does with new sentences from the training distribution.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(texts)
    folds = StratifiedKFold(PROFILE_FOLDS, shuffle=True, random_state=0)
    p_pos = cross_val_predict(clone(pipeline), texts, y, cv=folds, method="predict_proba")[:, 1]
    predicted = (p_pos >= 0.5).astype(np.int64)
    confidences = np.maximum(p_pos, 1.0 - p_pos)
    names = list(LABELS)
    template = build_text_profile(
        texts,
        pipeline.named_steps["tfidf"].vocabulary_,
        [names[c] for c in predicted],
        confidences,
        labels=names,
        model_name=info.name,
        model_sha256=info.sha256,
    )
    spec = template.text
    if spec is None:
        raise ValueError("build_text_profile returned a profile without its TextSpec")
    tokens = [spec.tokens(text) for text in texts]
    sentences_with = Counter(t for toks in tokens for t in set(toks))
    rows = np.empty((n, 3))
    for i, (text, toks) in enumerate(zip(texts, tokens, strict=True)):
        oov = sum(sentences_with[t] == 1 for t in toks) / len(toks) if toks else 0.0
        rows[i] = (len(text), len(toks), oov)
    return profile_of_rows(template, rows, predicted, confidences)


def rebuild_profile(models_root: Path) -> Path:
    """Rebuild the saved model's profile from its training sentences (``drift baseline``)."""
    loaded = load_model(models_root, NAME)
    data = split()
    path = profile_path(models_root, NAME)
    reference_profile(loaded.model, loaded.info, data.train_texts, data.train_labels).save(path)
    return path


def build_pipeline() -> Pipeline:
    return Pipeline(
        [
            ("tfidf", TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)),
            ("clf", LogisticRegression(C=10.0, max_iter=1000, random_state=0)),
        ]
    )


def train(models_root: Path) -> ModelInfo:
    """Train deterministically and save the artifact with its sha256; returns its identity."""
    data = split()
    pipe = build_pipeline().fit(data.train_texts, data.train_labels)
    accuracy = float(np.mean(pipe.predict(data.test_texts) == np.asarray(data.test_labels)))
    # A cache key scikit-learn derives from id() (set again by every transform): it would make
    # the artifact's sha256 differ between identical trainings. It is only a cache; drop it.
    pipe.named_steps["tfidf"].__dict__.pop("_stop_words_id", None)
    info = save_model(
        models_root,
        NAME,
        VERSION,
        pipe,
        task="binary text classification",
        labels=list(LABELS),
        train_sources=list(TRAIN_SOURCES),
        train_rows=len(data.train_texts),
        test_accuracy=round(accuracy, 4),
    )
    reference_profile(pipe, info, data.train_texts, data.train_labels).save(
        profile_path(models_root, NAME)
    )
    return info


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float  # probability of "positive"
    confidence: float  # probability of the predicted label


class SentimentModel:
    """A loaded, sha256-verified sentiment pipeline."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.info = loaded.info
        self._pipe: Pipeline = loaded.model

    @classmethod
    def load(cls, models_root: Path) -> SentimentModel:
        return cls(load_model(models_root, NAME))

    def predict(self, text: str) -> Prediction:
        p_pos = float(self._pipe.predict_proba([text])[0, 1])
        label = LABELS[int(p_pos >= 0.5)]
        return Prediction(label, p_pos, max(p_pos, 1.0 - p_pos))
