"""Split-Digits: scikit-learn's bundled 8x8 digits as a split stream, offline."""

import numpy as np
import pytest

from jaxcl.data import load_benchmark
from jaxcl.data.digits import digits_arrays


def test_split_digits_stream():
    x_train, y_train, x_test, y_test = digits_arrays()
    assert x_train.shape[1:] == (8, 8, 1) and len(x_train) + len(x_test) == 1797
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert len(y_test) == 599  # every third of 1,797, whatever the seed
    a = load_benchmark("split_digits", seed=3)
    b = load_benchmark("split_digits", seed=3)
    c = load_benchmark("split_digits", seed=4)
    assert len(a) == 5
    classes = [cls for e in a for cls in e.classes]
    assert sorted(classes) == list(range(10))
    assert [e.classes for e in a] != [e.classes for e in c]  # the seed draws the class order
    for e, f in zip(a, b):
        assert e.x_train.shape == (200, 8, 8, 1) and e.x_test.shape == (100, 8, 8, 1)
        np.testing.assert_array_equal(e.x_train, f.x_train)
        assert set(np.unique(e.y_train).tolist()) == {0, 1}
    small = load_benchmark("split_digits", seed=0, num_tasks=2, classes_per_task=3,
                           train_per_class=10, test_per_class=5)
    assert [e.x_train.shape[0] for e in small] == [30, 30]
    with pytest.raises(ValueError, match="does not take 'rgb32'"):
        load_benchmark("split_digits", seed=0, rgb32=True)
