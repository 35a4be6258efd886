"""Prompt drift: has the text people send an LLM moved away from the reference prompts?

Lengths and token counts (the tabular profile of an LLM model) miss a change of topic at equal
length. This module judges the prompts themselves, in three pieces:

- :func:`hashed_text_embedding`: an offline, stateless, deterministic text embedding (hashed
  character n-grams and words, randomly projected). It needs no model download and gives the
  same vector for the same text in every process, so a reference built today is comparable
  with tomorrow's traffic. It is **not** semantic: it sees spelling, vocabulary, punctuation,
  language and length, so a paraphrase in other words moves, and the same words about another
  intent do not. Named and versioned by :data:`EMBEDDER`.
- :func:`mmd_permutation_test`: the two-sample test of Gretton et al. (2012), "A Kernel
  Two-Sample Test" (JMLR 13): the unbiased squared maximum mean discrepancy under a Gaussian
  RBF kernel, its p-value from permutations of the pooled sample. The bandwidth follows the
  median heuristic as alibi-detect documents it for its MMD detector (``sigma_median``:
  sigma = sqrt(median squared distance / 2)), here over the reference's pairs only.
- :class:`EmbeddingReference` (a bounded sample of the reference prompts' embeddings, saved as
  ``embedding.npz`` beside the model's profile) and :class:`EmbeddingDriftAnalyzer`, the window
  analyzer (:mod:`infertrail.drift.analysis`) that tests each closed window's prompts against
  it on the drift thread: section ``embedding``, signals ``embedding.*``.

docs/drift.md, "Prompt drift (LLM)", gives the calibration on the shipped sentences and costs.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import json
import math
import os
import threading
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from infertrail.drift.analysis import Analysis
from infertrail.drift.stats import FloatArray

if TYPE_CHECKING:
    from infertrail.drift.detector import DriftWindow

__all__ = [
    "EMBEDDER",
    "EMBEDDING_FILE",
    "EmbeddingDriftAnalyzer",
    "EmbeddingFileError",
    "EmbeddingReference",
    "MmdResult",
    "embedding_path",
    "hashed_text_embedding",
    "median_bandwidth",
    "mmd_permutation_test",
    "window_prompts",
]

#: Name and version of :func:`hashed_text_embedding`; a reference records it, and one made by
#: another embedder (or another version of this one) is refused, not compared.
EMBEDDER = "hashed-char-ngrams/1"
DEFAULT_DIM = 256
#: Prompts kept from the reference (a uniform seeded sample): the test's cost grows with the
#: square of reference plus window, its power barely beyond a few hundred reference rows.
DEFAULT_SAMPLE_SIZE = 500
#: False-alarm rate per window (like the multivariate statistics').
DEFAULT_ALPHA = 0.01
DEFAULT_PERMUTATIONS = 200
#: Fewest prompts a window needs to be judged, and fewest reference prompts.
MIN_PROMPTS = 20
MIN_REFERENCE = 50
#: Prompts of one window beyond this are subsampled (seeded): the pooled kernel matrix and the
#: permutations cost O((reference + window)^2).
DEFAULT_MAX_PROMPTS = 1_000
#: Where a model's embedding reference lives, beside its drift profile.
EMBEDDING_FILE = "embedding.npz"
FORMAT = "infertrail-embedding-reference"
FORMAT_VERSION = 1

# Hash buckets per block (character n-grams, then words): the hashing trick is itself a sparse
# random projection (Weinberger et al. 2009); the dense Gaussian one after it spreads every
# n-gram over all ``dim`` coordinates.
_HASH_FEATURES = 1 << 12
# The projection comes from NumPy's legacy RandomState, whose stream NumPy keeps frozen across
# versions: the same seed gives the same matrix everywhere, as EMBEDDER's version promises.
_PROJECTION_SEED = 20_261_207
# Permuted statistics within this of the observed one count as reaching it (rounding of sums
# of the same kernel values in another order must not make a tie look smaller).
_TIE = 1e-12


class EmbeddingFileError(ValueError):
    """An embedding reference file that is missing, damaged, of another format or model."""


def embedding_path(models_dir: str | os.PathLike[str], model_name: str) -> Path:
    """Where a model's embedding reference lives: ``<models_dir>/<name>/embedding.npz``."""
    return Path(models_dir) / model_name / EMBEDDING_FILE


# -- the embedding ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _vectorizers() -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"n_features": _HASH_FEATURES, "alternate_sign": True, "dtype": np.float32}
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(3, 5), **common)
    words = HashingVectorizer(analyzer="word", **common)
    return chars, words


@functools.lru_cache(maxsize=4)
def _projection(dim: int) -> FloatArray:
    rows = np.random.RandomState(_PROJECTION_SEED).standard_normal((2 * _HASH_FEATURES, dim))
    out: FloatArray = (rows / math.sqrt(dim)).astype(np.float32)
    out.flags.writeable = False  # shared by every caller through the cache
    return out


def hashed_text_embedding(texts: Sequence[str], *, dim: int = DEFAULT_DIM) -> FloatArray:
    """Unit vectors of ``texts``, shape ``(len(texts), dim)``: :data:`EMBEDDER`.

    Each text (lower-cased) is counted as character 3- to 5-grams within word boundaries
    (scikit-learn's ``char_wb``) and as words of two or more characters, each block signed-hashed
    (MurmurHash3, seed 0) into 4,096 buckets and L2-normalised, so spelling and vocabulary
    weigh alike; the two blocks are projected by one fixed Gaussian matrix to ``dim``
    coordinates and the result L2-normalised (a text without any n-gram, such as "", is the
    zero vector). Deterministic and stateless: no fitting, no vocabulary, no download.
    """
    if isinstance(texts, str | bytes):
        raise ValueError("texts must be a sequence of str, not a single string")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an int >= 2, got {dim!r}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] is {type(text).__name__}, not str")
    if not items:
        return np.empty((0, dim))
    chars, words = _vectorizers()
    projection = _projection(dim)
    out = np.asarray(
        chars.transform(items) @ projection[:_HASH_FEATURES]
        + words.transform(items) @ projection[_HASH_FEATURES:],
        dtype=np.float64,
    )
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norms, out=out, where=norms > 0)
    return out


# -- the test --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MmdResult:
    """A kernel two-sample test: unbiased MMD^2, its permutation p-value, how it was made."""

    mmd2: float
    p_value: float
    bandwidth: float
    n_reference: int
    n_current: int
    n_permutations: int


def _rows(x: ArrayLike, what: str, dim: int | None = None) -> FloatArray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{what} must be 2-D (n, dim) with dim >= 1, got shape {a.shape}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{what} has {a.shape[1]} columns, the reference {dim}")
    if a.shape[0] < 2:
        raise ValueError(f"{what} needs at least 2 rows (the unbiased MMD^2 needs pairs)")
    if not np.isfinite(a).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    return a


def _squared_distances(a: FloatArray, b: FloatArray) -> FloatArray:
    d: FloatArray = (
        np.einsum("ij,ij->i", a, a)[:, None] + np.einsum("ij,ij->i", b, b)[None, :] - 2 * a @ b.T
    )
    return np.maximum(d, 0.0, out=d)


def median_bandwidth(reference: ArrayLike) -> float:
    """sigma of the median heuristic: sqrt(0.5 * median squared distance of reference pairs).

    With it, k(x, y) = exp(-||x - y||^2 / (2 sigma^2)) is exp(-1) at the median distance.
    ValueError when that median is 0 (most rows are one point: no scale to measure by).
    """
    x = _rows(reference, "reference")
    d = _squared_distances(x, x)[np.triu_indices(x.shape[0], k=1)]
    median = float(np.median(d))
    if not median > 0:
        raise ValueError(
            "the median squared distance between reference rows is 0 (most rows coincide); "
            "give a bandwidth"
        )
    return math.sqrt(0.5 * median)


def _check_bandwidth(bandwidth: float) -> float:
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, int | float):
        raise ValueError(f"bandwidth must be a number, got {bandwidth!r}")
    if not (math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be finite and positive, got {bandwidth!r}")
    return float(bandwidth)


def _check_permutations(n_permutations: int) -> int:
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, int):
        raise ValueError(f"n_permutations must be an int, got {n_permutations!r}")
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    return n_permutations


def _kernel(d2: FloatArray, bandwidth: float) -> FloatArray:
    out: FloatArray = np.exp(d2 * (-0.5 / (bandwidth * bandwidth)))
    return out


def _pooled_test(
    kernel: FloatArray, m: int, n_permutations: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Unbiased MMD^2 of rows ``:m`` against ``m:`` of a pooled kernel matrix whose diagonal is
    zero, and its permutation p-value: every labelling at once, from one matrix product.

    For a labelling s (1: reference), with K the kernel matrix and r = K s, s'Ks, (1-s)'K(1-s)
    and s'K(1-s) are sum(r * s), T - 2 sum(r) + sum(r * s) and sum(r) - sum(r * s), T the sum
    of K; the diagonal being zero drops the i = j terms, which is what makes MMD^2 unbiased.
    """
    n = kernel.shape[0]
    k = n - m
    labels = np.zeros((n_permutations + 1, n))
    labels[:, :m] = 1.0
    rng.permuted(labels[1:], axis=1, out=labels[1:])
    r = labels @ kernel
    within = np.einsum("ij,ij->i", r, labels)
    total = r.sum(axis=1)
    mmd2 = (
        within / (m * (m - 1))
        + (kernel.sum() - 2 * total + within) / (k * (k - 1))
        - 2 * (total - within) / (m * k)
    )
    observed = float(mmd2[0])
    reached = int(np.count_nonzero(mmd2[1:] >= observed - _TIE))
    return observed, (1 + reached) / (1 + n_permutations)


def mmd_permutation_test(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    n_permutations: int = DEFAULT_PERMUTATIONS,
    bandwidth: float | None = None,
    seed: int | np.random.Generator = 0,
) -> MmdResult:
    """Is ``current`` drawn from the distribution of ``reference``? (rows are points).

    Gaussian RBF kernel k(x, y) = exp(-||x - y||^2 / (2 sigma^2)), sigma = ``bandwidth`` or
    :func:`median_bandwidth` of the reference; the statistic is the unbiased MMD^2 (Gretton et
    al. 2012, eq. 3: kernel matrices with zeroed diagonals; it can be slightly negative); the
    p-value is (1 + #{permuted MMD^2 >= observed}) / (1 + ``n_permutations``), each permutation
    a uniform relabelling of the pooled rows with the same sizes: never 0, and P(p <= a) <= a
    when both samples come from one distribution. ValueError: not 2-D, other widths, fewer
    than 2 rows a side, non-finite values, a bandwidth or count that is not positive.
    """
    x = _rows(reference, "reference")
    y = _rows(current, "current", x.shape[1])
    n_permutations = _check_permutations(n_permutations)
    sigma = median_bandwidth(x) if bandwidth is None else _check_bandwidth(bandwidth)
    pooled = np.vstack([x, y])
    kernel = _kernel(_squared_distances(pooled, pooled), sigma)
    np.fill_diagonal(kernel, 0.0)
    mmd2, p_value = _pooled_test(kernel, x.shape[0], n_permutations, np.random.default_rng(seed))
    return MmdResult(mmd2, p_value, sigma, x.shape[0], y.shape[0], n_permutations)


# -- the reference ---------------------------------------------------------------------------


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha!r}")
    return float(alpha)


@dataclass(frozen=True, eq=False)  # eq: identity (the generated one would compare arrays)
class EmbeddingReference:
    """What the reference prompts looked like to :data:`EMBEDDER`: a seeded uniform sample of
    their embeddings, the kernel bandwidth measured on it, and the test's ``alpha``.

    ``n_texts``: how many reference prompts the sample was drawn from (0: unknown, taken as
    the sample's size). ``model_name`` and
    ``model_sha256`` identify the served model the reference belongs to (as a profile does).
    """

    embeddings: FloatArray
    bandwidth: float
    alpha: float = DEFAULT_ALPHA
    embedder: str = EMBEDDER
    n_texts: int = 0
    model_name: str = ""
    model_sha256: str = ""
    created_at: str = ""

    def __post_init__(self) -> None:
        e = np.asarray(self.embeddings, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] < 2:
            raise ValueError(f"embeddings must be 2-D (n, dim >= 2), got shape {e.shape}")
        if e.shape[0] < MIN_REFERENCE:
            raise ValueError(
                f"an embedding reference needs at least {MIN_REFERENCE} prompts, got {e.shape[0]}"
            )
        if not np.isfinite(e).all():
            raise ValueError("embeddings hold NaN or infinite values")
        if self.embedder != EMBEDDER:
            raise ValueError(
                f"the reference was embedded by {self.embedder!r}; this infertrail embeds with "
                f"{EMBEDDER!r}: rebuild the reference"
            )
        _check_bandwidth(self.bandwidth)
        _check_alpha(self.alpha)
        n_texts = self.n_texts
        if isinstance(n_texts, bool) or not isinstance(n_texts, int):
            raise ValueError(f"n_texts must be an int, got {n_texts!r}")
        if n_texts and n_texts < e.shape[0]:
            raise ValueError(f"n_texts {n_texts} is smaller than the sample ({e.shape[0]} rows)")
        object.__setattr__(self, "embeddings", e)
        object.__setattr__(self, "n_texts", n_texts or int(e.shape[0]))

    @property
    def dim(self) -> int:
        """The embedding's width: live prompts are embedded to it."""
        return int(self.embeddings.shape[1])

    @property
    def n_reference(self) -> int:
        """Rows of the sample (at most the ``sample_size`` it was built with)."""
        return int(self.embeddings.shape[0])

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        *,
        sample_size: int = DEFAULT_SAMPLE_SIZE,
        alpha: float = DEFAULT_ALPHA,
        dim: int = DEFAULT_DIM,
        seed: int = 0,
        model_name: str = "",
        model_sha256: str = "",
    ) -> EmbeddingReference:
        """The reference of ``texts`` (the reference prompts): at most ``sample_size`` of them,
        drawn uniformly with ``seed``, embedded; the bandwidth by the median heuristic."""
        if isinstance(sample_size, bool) or not isinstance(sample_size, int):
            raise ValueError(f"sample_size must be an int, got {sample_size!r}")
        if sample_size < MIN_REFERENCE:
            raise ValueError(f"sample_size must be at least {MIN_REFERENCE}, got {sample_size}")
        if isinstance(texts, str | bytes):
            raise ValueError("texts must be a sequence of str, not a single string")
        items = list(texts)
        n_texts = len(items)
        if n_texts < MIN_REFERENCE:
            raise ValueError(
                f"an embedding reference needs at least {MIN_REFERENCE} prompts, got {n_texts}"
            )
        for i, text in enumerate(items):
            if not isinstance(text, str):
                raise ValueError(f"texts[{i}] is {type(text).__name__}, not str")
        if n_texts > sample_size:
            pick = np.sort(np.random.default_rng(seed).choice(n_texts, sample_size, False))
            items = [items[i] for i in pick]
        embeddings = hashed_text_embedding(items, dim=dim)
        return cls(
            embeddings,
            median_bandwidth(embeddings),
            alpha,
            EMBEDDER,
            n_texts,
            model_name,
            model_sha256,
            dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one ``.npz`` (the embeddings and a JSON header), atomically (temporary file,
        fsync, rename): a reader sees the old file or the new one, never half of one."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        embeddings = np.ascontiguousarray(self.embeddings, dtype="<f8")
        header = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "embedder": self.embedder,
            "model": {"name": self.model_name, "sha256": self.model_sha256},
            "bandwidth": self.bandwidth,
            "alpha": self.alpha,
            "n_texts": self.n_texts,
            "created_at": self.created_at,
            "embeddings": {
                "shape": list(embeddings.shape),
                "sha256": hashlib.sha256(embeddings.tobytes()).hexdigest(),
            },
        }
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, allow_pickle=False, header=np.array(json.dumps(header)),
                     embeddings=embeddings)  # fmt: skip
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, expected_sha256: str | None = None
    ) -> EmbeddingReference:
        """Read and check a saved reference; ``expected_sha256``: the served model's, which the
        file must name. :class:`EmbeddingFileError` names the file and what is wrong."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise EmbeddingFileError(f"embedding reference {path}: {exc.strerror}") from None
        try:
            return _decode(raw, expected_sha256)
        except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as exc:
            raise EmbeddingFileError(f"embedding reference {path}: {exc}") from None


_HEADER_FIELDS = {
    "format", "version", "embedder", "model", "bandwidth", "alpha", "n_texts", "created_at",
    "embeddings",
}  # fmt: skip


def _decode(raw: bytes, expected_sha256: str | None) -> EmbeddingReference:
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        if set(npz.files) != {"header", "embeddings"}:
            raise ValueError(f"holds arrays {sorted(npz.files)}, not header and embeddings")
        header = json.loads(str(npz["header"]))
        embeddings = npz["embeddings"]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"is not an {FORMAT} file")
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"version {header.get('version')!r} is not supported (this infertrail reads "
            f"{FORMAT_VERSION}); rebuild the reference"
        )
    if set(header) != _HEADER_FIELDS:
        missing, extra = sorted(_HEADER_FIELDS - set(header)), sorted(set(header) - _HEADER_FIELDS)
        raise ValueError(f"header fields missing {missing}, unknown {extra}")
    model, meta = header["model"], header["embeddings"]
    if not isinstance(meta, dict) or set(meta) != {"shape", "sha256"}:
        raise ValueError("header embeddings must be {'shape': [n, dim], 'sha256': str}")
    if not isinstance(model, dict) or set(model) != {"name", "sha256"}:
        raise ValueError("header model must be {'name': str, 'sha256': str}")
    name, sha = model["name"], model["sha256"]
    if not isinstance(name, str) or not isinstance(sha, str):
        raise ValueError("header model must be {'name': str, 'sha256': str}")
    if embeddings.dtype != np.dtype("<f8") or list(embeddings.shape) != meta["shape"]:
        raise ValueError(
            f"embeddings are {embeddings.dtype}{list(embeddings.shape)}, the header says "
            f"float64{meta['shape']}"
        )
    if hashlib.sha256(embeddings.tobytes()).hexdigest() != meta["sha256"]:
        raise ValueError("the embeddings do not match the sha256 in the header (damaged)")
    if expected_sha256 is not None and sha != expected_sha256:
        raise ValueError(
            f"was built for model sha256 {sha or '(none)'}, not the served {expected_sha256}; "
            "rebuild it for this artifact"
        )
    created = header["created_at"]
    if not isinstance(created, str):
        raise ValueError("header created_at must be a string")
    return EmbeddingReference(
        embeddings, header["bandwidth"], header["alpha"], header["embedder"], header["n_texts"],
        name, sha, created,
    )  # fmt: skip


# -- the window analyzer ---------------------------------------------------------------------

_SECTION_KEYS = (
    "value", "p_value", "bandwidth", "n_reference", "n_current", "n_permutations", "drift",
)  # fmt: skip


def window_prompts(inputs: Sequence[Any]) -> list[str]:
    """The prompts of a window's inputs: each mapping's ``"prompt"`` that is a str (inputs
    without one, such as a classifier's, are skipped)."""
    return [p for x in inputs if isinstance(x, Mapping) and isinstance(p := x.get("prompt"), str)]


class EmbeddingDriftAnalyzer:
    """Prompt drift per window: the MMD permutation test of the window's prompt embeddings
    against an :class:`EmbeddingReference`; ``drift`` when p < ``alpha``.

    The reference's own kernel matrix is computed once; per window only the window's rows are
    embedded and their kernel values computed, and the permutations share one matrix product.
    A window of more than ``max_prompts`` prompts is judged on a seeded uniform subsample.
    """

    name = "embedding"

    def __init__(
        self,
        reference: EmbeddingReference,
        *,
        alpha: float | None = None,
        n_permutations: int = DEFAULT_PERMUTATIONS,
        max_prompts: int = DEFAULT_MAX_PROMPTS,
        seed: int = 0,
    ) -> None:
        """``alpha``: by default the reference's."""
        self.reference = reference
        self.alpha = reference.alpha if alpha is None else _check_alpha(alpha)
        self.n_permutations = _check_permutations(n_permutations)
        if 1 / (1 + n_permutations) >= self.alpha:
            raise ValueError(
                f"with {n_permutations} permutations the smallest p-value is "
                f"1/{n_permutations + 1}, never below alpha {self.alpha}: use at least "
                f"{math.ceil(1 / self.alpha)} permutations"
            )
        if isinstance(max_prompts, bool) or not isinstance(max_prompts, int):
            raise ValueError(f"max_prompts must be an int, got {max_prompts!r}")
        if max_prompts < MIN_PROMPTS:
            raise ValueError(f"max_prompts must be at least {MIN_PROMPTS}, got {max_prompts}")
        self.max_prompts = max_prompts
        ref = reference.embeddings
        self._ref_kernel = _kernel(_squared_distances(ref, ref), reference.bandwidth)
        np.fill_diagonal(self._ref_kernel, 0.0)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._threads: Any = None

    def judge(self, prompts: Sequence[str]) -> MmdResult:
        """The test of ``prompts`` (at least :data:`MIN_PROMPTS`) against the reference."""
        if len(prompts) < MIN_PROMPTS:
            raise ValueError(f"a window needs at least {MIN_PROMPTS} prompts, got {len(prompts)}")
        with self._lock:  # the generator is the analyzer's only mutable state
            rng = np.random.default_rng(self._rng.integers(2**63))
            if self._threads is None:
                from threadpoolctl import ThreadpoolController

                self._threads = ThreadpoolController()
        if len(prompts) > self.max_prompts:
            pick = np.sort(rng.choice(len(prompts), self.max_prompts, replace=False))
            prompts = [prompts[i] for i in pick]
        # One BLAS thread: the drift thread shares the cores with the service it watches (and
        # on a busy machine two threads of these small products were slower than one).
        with self._threads.limit(limits=1, user_api="blas"):
            return self._test(prompts, rng)

    def _test(self, prompts: Sequence[str], rng: np.random.Generator) -> MmdResult:
        ref = self.reference.embeddings
        cur = hashed_text_embedding(prompts, dim=self.reference.dim)
        sigma = self.reference.bandwidth
        m = ref.shape[0]
        kernel = np.empty((m + cur.shape[0],) * 2)
        kernel[:m, :m] = self._ref_kernel
        kernel[:m, m:] = _kernel(_squared_distances(ref, cur), sigma)
        kernel[m:, :m] = kernel[:m, m:].T
        kernel[m:, m:] = _kernel(_squared_distances(cur, cur), sigma)
        np.fill_diagonal(kernel[m:, m:], 0.0)
        mmd2, p_value = _pooled_test(kernel, m, self.n_permutations, rng)
        return MmdResult(mmd2, p_value, sigma, m, cur.shape[0], self.n_permutations)

    def analyze(self, window: DriftWindow) -> Analysis:
        """Section ``embedding``; signals ``embedding.mmd2``, ``embedding.p_value`` and
        ``embedding.drift`` (1.0/0.0). Fewer than 20 prompts: the section says so, no signals."""
        prompts = window_prompts(window.inputs)
        section: dict[str, Any] = {
            "statistic": "mmd2",
            **dict.fromkeys(_SECTION_KEYS),
            "alpha": self.alpha,
            "embedder": self.reference.embedder,
            "skipped": None,
        }
        if len(prompts) < MIN_PROMPTS:
            section.update(
                n_current=len(prompts), skipped=f"{len(prompts)} prompts; needs {MIN_PROMPTS}"
            )
            return Analysis(section)
        result = self.judge(prompts)
        drift = result.p_value < self.alpha
        section.update(
            value=result.mmd2,
            p_value=result.p_value,
            bandwidth=result.bandwidth,
            n_reference=result.n_reference,
            n_current=result.n_current,
            n_permutations=result.n_permutations,
            drift=drift,
        )
        return Analysis(
            section,
            {
                "embedding.mmd2": result.mmd2,
                "embedding.p_value": result.p_value,
                "embedding.drift": float(drift),
            },
        )
