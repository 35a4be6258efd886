"""Demo models and traffic simulators."""

from collections.abc import Callable
from pathlib import Path

from infertrail.demo import credit, digits, sentiment
from infertrail.events import ModelInfo

# Every demo model's deterministic trainer, by name (`infertrail train NAME`).
TRAINERS: dict[str, Callable[[Path], ModelInfo]] = {
    sentiment.NAME: sentiment.train,
    credit.NAME: credit.train,
    digits.NAME: digits.train,
}


def train_all(models_root: Path) -> list[ModelInfo]:
    """Train every demo model into ``models_root``."""
    return [train(models_root) for train in TRAINERS.values()]
