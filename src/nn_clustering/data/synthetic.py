"""The generated datasets (LINE, RANDOM) and the mixing of two datasets (method.md §1).

Every generator is seeded and byte-for-byte deterministic: each (seed, dataset name) pair has
its own random stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import numpy as np

from .imageset import IMAGE_SIDE, ImageSet

DEFAULT_SEED = 42
LINE_MAX = 10


def dataset_rng(seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible stream per (seed, dataset name)."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def make_line_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` black images with k ~ U{1..10} distinct full-height white columns; label k - 1."""
    counts = rng.integers(1, LINE_MAX + 1, size=n)
    ranks = np.argsort(rng.random((n, IMAGE_SIDE)), axis=1).argsort(axis=1)
    columns = ranks < counts[:, None]  # exactly counts[i] distinct columns, uniformly chosen
    images = np.repeat(columns[:, None, :], IMAGE_SIDE, axis=1).astype(np.uint8) * np.uint8(255)
    return images, (counts - 1).astype(np.int64)


def make_line(seed: int = DEFAULT_SEED, n_train: int = 60000, n_test: int = 10000) -> ImageSet:
    """The LINE dataset of method.md §1."""
    rng = dataset_rng(seed, "line")
    x_train, y_train = make_line_images(n_train, rng)
    x_test, y_test = make_line_images(n_test, rng)
    return ImageSet(x_train, y_train, x_test, y_test)


def make_random(seed: int = DEFAULT_SEED, n_train: int = 60000, n_test: int = 10000) -> ImageSet:
    """The RANDOM dataset: uniform pixels in [0, 255] and uniform labels in 0..9."""
    rng = dataset_rng(seed, "random")
    shape = (IMAGE_SIDE, IMAGE_SIDE)
    x_train = rng.integers(0, 256, size=(n_train, *shape), dtype=np.uint8)
    y_train = rng.integers(0, 10, size=n_train).astype(np.int64)
    x_test = rng.integers(0, 256, size=(n_test, *shape), dtype=np.uint8)
    y_test = rng.integers(0, 10, size=n_test).astype(np.int64)
    return ImageSet(x_train, y_train, x_test, y_test)


#: The polynomial regression task (method.md §1): inputs x1, x2; monomials x1^a x2^b for
#: (a, b) in {0, 1, 2}^2 in this order; one output per 0/1 coefficient vector over them.
POLY_INPUTS, POLY_EXPONENTS = 2, (0, 1, 2)


def poly_exponents() -> np.ndarray:
    """(9, 2): the exponents (a, b) of each monomial, in itertools.product order."""
    grid = np.array(np.meshgrid(POLY_EXPONENTS, POLY_EXPONENTS, indexing="ij"))
    return grid.reshape(POLY_INPUTS, -1).T


def poly_coefficients() -> np.ndarray:
    """(512, 9): every 0/1 coefficient vector over the monomials, in itertools.product order
    (row k holds the binary digits of k, the first monomial's the most significant)."""
    n_terms = len(POLY_EXPONENTS) ** POLY_INPUTS
    k = np.arange(2**n_terms)[:, None]
    return ((k >> np.arange(n_terms - 1, -1, -1)[None, :]) & 1).astype(np.float64)


def poly_targets(x: np.ndarray) -> np.ndarray:
    """(n, 512) targets of inputs ``x`` (n, 2): every coefficient vector's polynomial."""
    exponents = poly_exponents()
    monomials = np.prod(np.asarray(x, np.float64)[:, None, :] ** exponents[None, :, :], axis=2)
    return monomials @ poly_coefficients().T


def make_poly(seed: int = DEFAULT_SEED, n_train: int = 60000, n_test: int = 10000) -> ImageSet:
    """The successor paper's polynomial regression (``poly``): standard normal inputs (n, 2),
    float32, and their 512 polynomial targets (:func:`poly_targets`), float32."""
    rng = dataset_rng(seed, "poly")
    x_train, x_test = rng.normal(size=(n_train, POLY_INPUTS)), rng.normal(size=(n_test, POLY_INPUTS))
    return ImageSet(x_train.astype(np.float32), poly_targets(x_train).astype(np.float32),
                    x_test.astype(np.float32), poly_targets(x_test).astype(np.float32))


def mix(a: ImageSet, b: ImageSet, rng: np.random.Generator, separated: bool = False) -> ImageSet:
    """Stack A and B (optionally A's labels < 5 with B's labels >= 5), then permute each split."""
    out = {}
    for split in ("train", "test"):
        xa, ya = getattr(a, f"x_{split}"), getattr(a, f"y_{split}")
        xb, yb = getattr(b, f"x_{split}"), getattr(b, f"y_{split}")
        if separated:
            keep_a, keep_b = ya < 5, yb >= 5
            xa, ya, xb, yb = xa[keep_a], ya[keep_a], xb[keep_b], yb[keep_b]
        x = np.concatenate([xa, xb])
        y = np.concatenate([ya, yb])
        source = np.concatenate([np.zeros(len(xa), bool), np.ones(len(xb), bool)])
        perm = rng.permutation(len(x))
        out[split] = (x[perm], y[perm], source[perm])
    return ImageSet(
        out["train"][0], out["train"][1], out["test"][0], out["test"][1],
        source_train=out["train"][2], source_test=out["test"][2],
    )


def squeeze_width(images: np.ndarray) -> np.ndarray:
    """(n, 28, 28) uint8 images squeezed to half width, (n, 28, 14): each pair of adjacent
    columns averaged, rounded half up ((a + b + 1) // 2)."""
    x = images.astype(np.uint16)
    return ((x[:, :, 0::2] + x[:, :, 1::2] + 1) // 2).astype(np.uint8)


def _pairs(y: np.ndarray, rng: np.random.Generator, same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(first, second, labels) of the successor's paired datasets: ``same``: every row i first and
    a row drawn uniformly from i's class second, label y_i; otherwise two rows drawn uniformly
    with replacement, label (y_first + y_second) mod 10."""
    n = len(y)
    if not same:
        first, second = rng.integers(0, n, size=n), rng.integers(0, n, size=n)
        return first, second, (y[first] + y[second]) % 10
    second = np.empty(n, np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        second[members] = members[rng.integers(0, len(members), size=len(members))]
    return np.arange(n), second, y.copy()


def halves(base: ImageSet, rng: np.random.Generator, same: bool) -> ImageSet:
    """The successor paper's halves datasets (method.md §1): every image is two images of
    ``base`` squeezed to half width, side by side, paired as :func:`_pairs` draws them. Each
    split is drawn from itself, as many rows as it has."""
    return _paired(base, rng, same, lambda a, b: np.concatenate([squeeze_width(a), squeeze_width(b)], axis=2))


def stacked(base: ImageSet, rng: np.random.Generator, same: bool) -> ImageSet:
    """The successor paper's stacked datasets for CNNs (method.md §1): every example is two
    whole images of ``base`` as two channels, (n, 28, 28, 2), paired as :func:`_pairs` draws them."""
    return _paired(base, rng, same, lambda a, b: np.stack([a, b], axis=-1))


def _paired(base: ImageSet, rng: np.random.Generator, same: bool,
            combine: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> ImageSet:
    out = {}
    for split in ("train", "test"):
        x, y = getattr(base, f"x_{split}"), getattr(base, f"y_{split}")
        first, second, labels = _pairs(y, rng, same)
        out[split] = (combine(x[first], x[second]), labels.astype(np.int64))
    return ImageSet(out["train"][0], out["train"][1], out["test"][0], out["test"][1])
