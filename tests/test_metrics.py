"""CL metrics on a hand-made accuracy matrix."""

import numpy as np
import pytest

from jaxcl import metrics

# R[i, j]: accuracy on task j after training task i (entries above the diagonal unused).
R = np.array([
    [0.9, 0.0, 0.0],
    [0.6, 0.8, 0.0],
    [0.5, 0.7, 1.0],
])


def test_metrics_by_hand():
    assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 1.0) / 3)
    assert metrics.learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 1.0) / 3)
    # max over earlier rows minus final: task 0: 0.9 - 0.5, task 1: 0.8 - 0.7.
    assert metrics.forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    assert metrics.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy_not_the_first():
    r = np.array([[0.5, 0, 0], [0.9, 0.8, 0], [0.6, 0.8, 0.7]])
    assert metrics.forgetting(r) == pytest.approx((0.3 + 0.0) / 2)
    assert metrics.backward_transfer(r) == pytest.approx((0.1 + 0.0) / 2)


def test_single_experience_and_bad_shapes():
    assert metrics.summary([[0.7]]) == {"aca": 0.7, "learning_accuracy": 0.7, "forgetting": 0.0,
                                        "bwt": 0.0}
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        metrics.forgetting(np.zeros((2, 3)))
