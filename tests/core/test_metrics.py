"""CL metrics on hand-made accuracy matrices, every expected number worked out by hand."""

import numpy as np
import pytest

from jaxcl.core import metrics

# R[i, j]: accuracy on task j after training task i. Entries above the diagonal are never read:
# they are set to 1.0 here so that a metric that read them would come out wrong.
R = np.array([
    [0.9, 1.0, 1.0],
    [0.6, 0.8, 1.0],
    [0.5, 0.7, 1.0],
])


def test_metrics_by_hand():
    assert metrics.average_accuracy(R) == pytest.approx((0.5 + 0.7 + 1.0) / 3)
    assert metrics.learning_accuracy(R) == pytest.approx((0.9 + 0.8 + 1.0) / 3)
    # Avalanche: just after training minus final. task 0: 0.9 - 0.5, task 1: 0.8 - 0.7.
    assert metrics.forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    # Here the diagonal is each column's best, so Chaudhry's max-based forgetting agrees.
    assert metrics.max_forgetting(R) == pytest.approx((0.4 + 0.1) / 2)
    assert metrics.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_accuracy_that_rises_then_falls_separates_the_two_forgettings():
    # Task 0: 0.5 just after training, rises to 0.9 after task 1, ends at 0.6.
    r = np.array([[0.5, 1.0, 1.0], [0.9, 0.8, 1.0], [0.6, 0.8, 0.7]])
    # Avalanche: task 0: 0.5 - 0.6 = -0.1, task 1: 0.8 - 0.8 = 0.
    assert metrics.forgetting(r) == pytest.approx((-0.1 + 0.0) / 2)
    # Chaudhry et al.: task 0: max(0.5, 0.9) - 0.6 = 0.3, task 1: 0.8 - 0.8 = 0.
    assert metrics.max_forgetting(r) == pytest.approx((0.3 + 0.0) / 2)
    assert metrics.backward_transfer(r) == pytest.approx((0.1 + 0.0) / 2)


def test_four_experiences():
    r = np.array([
        [0.8, 1.0, 1.0, 1.0],
        [0.9, 0.7, 1.0, 1.0],
        [0.4, 0.9, 0.6, 1.0],
        [0.5, 0.6, 0.3, 0.95],
    ])
    # Avalanche: 0.8 - 0.5, 0.7 - 0.6, 0.6 - 0.3.
    assert metrics.forgetting(r) == pytest.approx((0.3 + 0.1 + 0.3) / 3)
    # Chaudhry et al., max over rows j..2 (the last row is not "earlier"):
    # max(0.8, 0.9, 0.4) - 0.5, max(0.7, 0.9) - 0.6, 0.6 - 0.3.
    assert metrics.max_forgetting(r) == pytest.approx((0.4 + 0.3 + 0.3) / 3)
    assert metrics.forgetting(r) == pytest.approx(-metrics.backward_transfer(r))


def test_summary_holds_both_forgettings():
    r = np.array([[0.5, 1.0], [0.25, 0.75]])
    assert metrics.summary(r) == {
        "aca": pytest.approx(0.5), "learning_accuracy": pytest.approx(0.625),
        "forgetting": pytest.approx(0.25), "max_forgetting": pytest.approx(0.25),
        "bwt": pytest.approx(-0.25)}


def test_single_experience_and_bad_shapes():
    assert metrics.summary([[0.7]]) == {"aca": 0.7, "learning_accuracy": 0.7, "forgetting": 0.0,
                                        "max_forgetting": 0.0, "bwt": 0.0}
    for metric in (metrics.forgetting, metrics.max_forgetting, metrics.backward_transfer):
        with pytest.raises(ValueError, match=r"\(2, 3\)"):
            metric(np.zeros((2, 3)))
        with pytest.raises(ValueError, match=r"\(0, 0\)"):
            metric(np.zeros((0, 0)))


def test_held_at_end_repeats_each_task_at_its_end_below_the_diagonal():
    m = np.array([[1.0, 5.0, 6.0], [2.0, 3.0, 7.0], [4.0, 8.0, 9.0]])
    np.testing.assert_array_equal(metrics.held_at_end(m),
                                  [[1.0, 5.0, 6.0], [1.0, 3.0, 7.0], [1.0, 3.0, 9.0]])
    assert metrics.error_summary(metrics.held_at_end(m))["mean_forgetting"] == 0.0
    with pytest.raises(ValueError, match="square"):
        metrics.held_at_end(np.zeros((2, 3)))
