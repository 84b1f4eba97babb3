"""Split-Digits: scikit-learn's bundled 8x8 handwritten digits as a real, offline split stream.

The 1,797 images of ``sklearn.datasets.load_digits`` (the UCI optical-digits test set, 8x8
pixels of 0..16, about 180 per class) ship inside scikit-learn: a real benchmark of seconds that
needs no download, for checking a strategy on real data at small budgets. A fixed test split,
every third image of the file (about 60 per class), never depends on the seed; the seed draws the
class order and the per-class subsets, as every split benchmark's does
(:func:`jaxcl.data.user_data.from_arrays`). Images are ``(8, 8, 1)``, ``pixel / 16``, then normalised
like every split's (:mod:`jaxcl.data.splits`). Defaults: 5 experiences x 2 classes, 100 training
and 50 test images per class, so that every class and every seed has the same shapes.
"""

from __future__ import annotations

import numpy as np

from jaxcl.types import Experience


def digits_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: the digits in [0, 1], ``(N, 8, 8, 1)``, every
    third image of the file held out for testing."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError("split_digits reads the 8x8 digits bundled with scikit-learn: pip "
                          "install scikit-learn (or jaxcl's 'data' extra)") from error
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[..., None]
    y = digits.target.astype(np.int64)
    test = np.arange(len(y)) % 3 == 0
    return x[~test], y[~test], x[test], y[test]


def load_split_digits(seed: int, *, num_tasks: int = 5, classes_per_task: int = 2,
                      train_per_class: int = 100, test_per_class: int = 50,
                      cache: dict | None = None) -> list[Experience]:
    """The Split-Digits stream for ``seed`` (module docstring); ``cache`` keeps the arrays."""
    from jaxcl.data.user_data import from_arrays

    if cache is not None and "split_digits" in cache:
        arrays = cache["split_digits"]
    else:
        arrays = digits_arrays()
        if cache is not None:
            cache["split_digits"] = arrays
    return from_arrays(*arrays, classes_per_task=classes_per_task, num_tasks=num_tasks,
                       seed=seed, train_per_class=train_per_class, test_per_class=test_per_class)
