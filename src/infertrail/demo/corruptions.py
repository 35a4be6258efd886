"""Image corruptions of the 8x8 digits, at severities 1..5, seeded: the simulator's drift.

Each corruption takes a batch of images (rows of 64 intensities, or 8x8 arrays, values 0..16)
and returns new rows of 64 values that are again integers 0..16, like a real scanner's output:
a corrupted image is a plausible input, not one the API would reject. Modelled on ImageNet-C
(Hendrycks & Dietterich, 2019), scaled to 8x8 pictures with 17 grey levels:

============== ============================================== ==============================
scenario       what happens                                   severity 1 .. 5
============== ============================================== ==============================
clean          nothing                                        (no severity)
gaussian_noise additive N(0, sigma) noise on every pixel      sigma 1, 2, 3, 4.5, 6
blur           Gaussian blur (scipy.ndimage.gaussian_filter)  sigma 0.4, 0.6, 0.8, 1.0, 1.3
brightness     every pixel raised by a constant (over-        +1, +2, +3, +4, +6
               exposure, a grey background)
rotation       about the centre, random direction per image   5, 10, 15, 20, 30 degrees
occlusion      a square of full ink at a random place         side 1, 2, 3, 4, 5 pixels
               (a finger, a sticker)
============== ============================================== ==============================

Pure numpy and scipy.ndimage; the same seed gives the same images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

FloatArray = NDArray[np.float64]

SHAPE = (8, 8)
N_PIXELS = 64
PIXEL_MAX = 16
SEVERITIES = (1, 2, 3, 4, 5)

_NOISE_SIGMA = (1.0, 2.0, 3.0, 4.5, 6.0)
_BLUR_SIGMA = (0.4, 0.6, 0.8, 1.0, 1.3)
_BRIGHTNESS_DELTA = (1, 2, 3, 4, 6)
_ROTATION_DEGREES = (5.0, 10.0, 15.0, 20.0, 30.0)
_OCCLUSION_SIDE = (1, 2, 3, 4, 5)


def _clean(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    return images.copy()


def _gaussian_noise(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    return images + rng.normal(0.0, _NOISE_SIGMA[severity - 1], size=images.shape)


def _blur(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    # sigma 0 along the batch axis: each image is blurred on its own
    sigma = _BLUR_SIGMA[severity - 1]
    return np.asarray(ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma), mode="constant"))


def _brightness(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    return images + _BRIGHTNESS_DELTA[severity - 1]


def _rotation(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    angles = _ROTATION_DEGREES[severity - 1] * rng.choice([-1.0, 1.0], size=images.shape[0])
    out = np.empty_like(images)
    for i, (image, angle) in enumerate(zip(images, angles, strict=True)):
        out[i] = ndimage.rotate(image, angle, reshape=False, order=1, mode="constant", cval=0.0)
    return out


def _occlusion(images: FloatArray, severity: int, rng: np.random.Generator) -> FloatArray:
    side = _OCCLUSION_SIDE[severity - 1]
    out = images.copy()
    corners = rng.integers(0, SHAPE[0] - side + 1, size=(images.shape[0], 2))
    for i, (r, c) in enumerate(corners):
        out[i, r : r + side, c : c + side] = PIXEL_MAX
    return out


_CORRUPTIONS: dict[str, Callable[[FloatArray, int, np.random.Generator], FloatArray]] = {
    "clean": _clean,
    "gaussian_noise": _gaussian_noise,
    "blur": _blur,
    "brightness": _brightness,
    "rotation": _rotation,
    "occlusion": _occlusion,
}
SCENARIOS: tuple[str, ...] = tuple(_CORRUPTIONS)


def corrupt(
    images: Any, scenario: str, severity: int = 1, rng: np.random.Generator | int = 0
) -> FloatArray:
    """``images`` with ``scenario`` applied at ``severity`` (1..5), as rows of 64 integers 0..16.

    ``rng`` is a numpy Generator or a seed; the images given are never modified.
    """
    try:
        apply = _CORRUPTIONS[scenario]
    except KeyError:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}") from None
    if isinstance(severity, bool) or not isinstance(severity, int | np.integer):
        raise ValueError(f"severity must be an integer 1..5, got {severity!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be 1..5, got {severity}")
    batch = _as_batch(images)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    out = apply(batch.reshape(-1, *SHAPE), int(severity), gen)
    return np.clip(np.rint(out), 0, PIXEL_MAX).reshape(-1, N_PIXELS)


def _as_batch(images: Any) -> FloatArray:
    try:
        arr = np.asarray(images, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("images must be numbers (rows of 64 intensities 0..16)") from None
    if arr.ndim == 3 and arr.shape[1:] == SHAPE:
        arr = arr.reshape(arr.shape[0], N_PIXELS)
    if arr.ndim != 2 or arr.shape[1] != N_PIXELS:
        raise ValueError(f"images must have shape (n, 64) or (n, 8, 8), got {arr.shape}")
    if not np.all(np.isfinite(arr)) or arr.min(initial=0) < 0 or arr.max(initial=0) > PIXEL_MAX:
        raise ValueError(f"image intensities must be finite numbers 0..{PIXEL_MAX}")
    return arr
