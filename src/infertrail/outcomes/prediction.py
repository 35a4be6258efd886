"""What the outcomes store keeps of one inference, and the columns estimates read.

:class:`Prediction` is what the join needs (time, model, version, label, score, confidence,
decision, latency) and what label-free estimates need besides: the artifact's sha256 and every
class's probability when the service reported them. Probabilities are bounded
(:func:`check_probabilities`) and stored as float64 little-endian bytes
(:func:`pack_probabilities`), one value per class, the class labels kept once per distinct set.
:class:`ScoredPredictions` is a period's predictions column by column, as
:mod:`infertrail.outcomes.estimated` reads them.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_CLASS_LABEL",
    "MAX_PROBABILITY_CLASSES",
    "Prediction",
    "ScoredPredictions",
    "check_probabilities",
    "pack_probabilities",
    "unpack_probabilities",
]

#: Most classes whose probabilities are kept with a prediction (8 KiB of values); a service
#: reporting more keeps its predictions without them.
MAX_PROBABILITY_CLASSES = 1024
#: Longest class label kept with probabilities (as an outcome label may be).
MAX_CLASS_LABEL = 256


def check_probabilities(probabilities: Any) -> None:
    """ValueError unless ``probabilities`` maps at most MAX_PROBABILITY_CLASSES class labels
    (non-empty strings of at most MAX_CLASS_LABEL characters) to numbers.

    Values are not required to lie in [0, 1]: what a service reported is kept as it was, and the
    estimator counts the rows it cannot read (``invalid_probability``).
    """
    if not isinstance(probabilities, Mapping):
        raise ValueError(
            f"probabilities must map class labels to numbers, got {type(probabilities).__name__}"
        )
    if not 0 < len(probabilities) <= MAX_PROBABILITY_CLASSES:
        raise ValueError(
            f"probabilities must name 1 to {MAX_PROBABILITY_CLASSES} classes, got "
            f"{len(probabilities)}"
        )
    for label, p in probabilities.items():
        if not isinstance(label, str) or not 0 < len(label) <= MAX_CLASS_LABEL:
            raise ValueError(
                f"probability labels must be strings of 1 to {MAX_CLASS_LABEL} characters, got "
                f"{str(label)[:40]!r}"
            )
        if isinstance(p, bool) or not isinstance(p, int | float):
            raise ValueError(f"the probability of {label!r} must be a number, got {p!r}")


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the join needs of one inference, and what label-free estimates need besides.

    ``model_sha256``: the artifact that predicted (None for predictions indexed before the
    store kept it). ``probabilities``: every class's probability (label -> p), when the service
    reported them (:func:`check_probabilities` says what the store accepts).
    """

    request_id: str
    ts_ns: int
    model: str
    version: str
    label: str | None
    score: float | None
    confidence: float | None
    decision: str | None
    latency_ms: float
    team: str = ""
    endpoint: str = ""
    model_sha256: str | None = None
    probabilities: Mapping[str, float] | None = field(default=None, hash=False)


def pack_probabilities(values: Iterable[float]) -> bytes:
    """Probabilities as float64 little-endian bytes (the ``probabilities`` column)."""
    packed = array("d", (float(v) for v in values))
    if sys.byteorder != "little":
        packed.byteswap()
    return packed.tobytes()


def unpack_probabilities(blob: bytes) -> list[float]:
    """The values :func:`pack_probabilities` packed."""
    values = array("d")
    values.frombytes(blob)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


@dataclass(frozen=True)
class ScoredPredictions:
    """Every prediction of one model version in a period, column by column, with what CBPE
    reads and the ``label`` outcome, if any (None where there is none yet).

    ``probability_labels``: per row the id of its probabilities' class labels (None where
    there are none) and ``labels_of`` those ids' labels; ``probabilities`` the float64
    little-endian bytes, one value per label.
    """

    ts_ns: list[int]
    model_sha256: list[str | None]
    label: list[str | None]
    score: list[float | None]
    confidence: list[float | None]
    probability_labels: list[int | None]
    probabilities: list[bytes | None]
    outcome_label: list[str | None]
    labels_of: dict[int, tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.ts_ns)

    def subset(self, rows: Iterable[int]) -> ScoredPredictions:
        """The predictions at positions ``rows``, in that order."""
        at = list(rows)

        def take(column: list[Any]) -> list[Any]:
            return [column[i] for i in at]

        return ScoredPredictions(
            take(self.ts_ns),
            take(self.model_sha256),
            take(self.label),
            take(self.score),
            take(self.confidence),
            take(self.probability_labels),
            take(self.probabilities),
            take(self.outcome_label),
            self.labels_of,
        )
