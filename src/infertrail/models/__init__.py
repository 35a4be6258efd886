"""The served models: credit, sentiment and digits (training, artifacts, reason codes).

Each is trained deterministically from data shipped in ``models/data`` and saved with its
sha256 and card (:mod:`.artifacts`), beside its monitoring references (the drift profile
and, for credit and digits, the CBPE performance estimator), which the builders below rebuild
for a saved model; the server loads them, the demo drives them.
"""

from collections.abc import Callable
from pathlib import Path

from infertrail.events import ModelInfo
from infertrail.models import credit, digits, sentiment
from infertrail.models.artifacts import LoadedModel, ModelArtifactError, load_model, save_model

__all__ = [
    "ESTIMATOR_BUILDERS",
    "PROFILE_BUILDERS",
    "TRAINERS",
    "LoadedModel",
    "ModelArtifactError",
    "load_model",
    "save_model",
    "train_all",
]

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
