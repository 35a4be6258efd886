"""Image corruptions of the 8x8 digits: valid images out, seeded, stronger with severity."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import load_digits

from infertrail.demo.corruptions import SCENARIOS, SEVERITIES, corrupt

CORRUPTIONS = [s for s in SCENARIOS if s != "clean"]
RANDOM = ("gaussian_noise", "rotation", "occlusion")


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.asarray(load_digits().data[:300], dtype=np.float64)


def test_scenarios_are_the_documented_ones() -> None:
    assert SCENARIOS == ("clean", "gaussian_noise", "blur", "brightness", "rotation", "occlusion")


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("severity", SEVERITIES)
def test_outputs_are_valid_digit_images(images: np.ndarray, scenario: str, severity: int) -> None:
    before = images.copy()
    out = corrupt(images, scenario, severity, rng=1)
    assert out.shape == images.shape and out.dtype == np.float64
    assert np.array_equal(out, np.rint(out))
    assert out.min() >= 0 and out.max() <= 16
    assert np.array_equal(images, before), "the input must not be modified"


def test_clean_is_the_identity(images: np.ndarray) -> None:
    assert np.array_equal(corrupt(images, "clean", 5, rng=3), images)


@pytest.mark.parametrize("scenario", CORRUPTIONS)
def test_every_corruption_changes_images(images: np.ndarray, scenario: str) -> None:
    out = corrupt(images, scenario, 1, rng=0)
    changed = np.any(out != images, axis=1).mean()
    assert changed > 0.5


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_same_seed_gives_the_same_images(images: np.ndarray, scenario: str) -> None:
    a = corrupt(images, scenario, 3, rng=42)
    b = corrupt(images, scenario, 3, rng=np.random.default_rng(42))
    assert np.array_equal(a, b)


@pytest.mark.parametrize("scenario", RANDOM)
def test_another_seed_gives_other_images(images: np.ndarray, scenario: str) -> None:
    assert not np.array_equal(corrupt(images, scenario, 3, rng=1), corrupt(images, scenario, 3, 2))


@pytest.mark.parametrize("scenario", CORRUPTIONS)
def test_higher_severity_moves_images_further(images: np.ndarray, scenario: str) -> None:
    change = [np.abs(corrupt(images, scenario, s, rng=0) - images).mean() for s in SEVERITIES]
    assert change[0] > 0
    assert change[-1] > 1.5 * change[0], change
    assert all(b >= a * 0.95 for a, b in itertools.pairwise(change)), change


def test_brightness_raises_every_pixel_until_the_top(images: np.ndarray) -> None:
    out = corrupt(images, "brightness", 2, rng=0)
    assert np.array_equal(out, np.minimum(images + 2, 16))


def test_occlusion_paints_a_square_of_full_ink(images: np.ndarray) -> None:
    blank = np.zeros((50, 64))
    out = corrupt(blank, "occlusion", 5, rng=0).reshape(50, 8, 8)
    for image in out:
        rows, cols = np.nonzero(image == 16)
        assert len(rows) == 25  # side 5
        assert rows.max() - rows.min() == 4 and cols.max() - cols.min() == 4


def test_accepts_8x8_arrays_and_lists() -> None:
    image = load_digits().data[0]
    as_grid = corrupt(image.reshape(1, 8, 8), "blur", 2, rng=0)
    as_list = corrupt([image.tolist()], "blur", 2, rng=0)
    assert as_grid.shape == (1, 64)
    assert np.array_equal(as_grid, as_list)


def test_an_empty_batch_stays_empty() -> None:
    assert corrupt(np.empty((0, 64)), "rotation", 2, rng=0).shape == (0, 64)


@pytest.mark.parametrize(
    ("images", "scenario", "severity", "message"),
    [
        (np.zeros((2, 64)), "fog", 1, "unknown scenario 'fog'; valid: clean, gaussian_noise"),
        (np.zeros((2, 64)), "blur", 0, "severity must be 1..5, got 0"),
        (np.zeros((2, 64)), "blur", 6, "severity must be 1..5, got 6"),
        (np.zeros((2, 64)), "blur", 2.0, "severity must be an integer 1..5, got 2.0"),
        (np.zeros((2, 64)), "blur", True, "severity must be an integer 1..5, got True"),
        (np.zeros((2, 63)), "blur", 1, r"shape \(n, 64\) or \(n, 8, 8\), got \(2, 63\)"),
        (np.zeros(64), "blur", 1, r"got \(64,\)"),
        (np.full((1, 64), 17.0), "blur", 1, "finite numbers 0..16"),
        (np.full((1, 64), -1.0), "blur", 1, "finite numbers 0..16"),
        (np.full((1, 64), np.nan), "blur", 1, "finite numbers 0..16"),
        ([["a"] * 64], "blur", 1, "must be numbers"),
    ],
)
def test_bad_arguments_are_named(
    images: object, scenario: str, severity: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        corrupt(images, scenario, severity, rng=0)  # type: ignore[arg-type]


@settings(max_examples=40, deadline=None)
@given(
    batch=arrays(
        np.float64, st.tuples(st.integers(1, 5), st.just(64)), elements=st.integers(0, 16)
    ),
    scenario=st.sampled_from(SCENARIOS),
    severity=st.sampled_from(SEVERITIES),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_valid_image_stays_a_valid_image(
    batch: np.ndarray, scenario: str, severity: int, seed: int
) -> None:
    out = corrupt(batch, scenario, severity, rng=seed)
    assert out.shape == batch.shape
    assert np.array_equal(out, np.clip(np.rint(out), 0, 16))
