"""Synthetic streams and the scan over minibatches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcl.data.synthetic_images import synthetic_image_stream
from jaxcl.train.steps import minibatch_indices, scan_minibatches
from jaxcl.types import Batch


def test_synthetic_stream(key):
    stream = synthetic_image_stream(key, num_tasks=4, classes_per_task=3, train_per_class=5,
                                    test_per_class=2, image_shape=(4, 4, 1))
    assert [e.task_id for e in stream] == [0, 1, 2, 3]
    classes = [c for e in stream for c in e.classes]
    assert sorted(classes) == list(range(12))  # every class once, none shared between tasks
    for e in stream:
        assert e.x_train.shape == (15, 4, 4, 1) and e.x_test.shape == (6, 4, 4, 1)
        assert set(np.asarray(e.y_train).tolist()) == {0, 1, 2}  # labels restart per task
    again = synthetic_image_stream(key, num_tasks=4, classes_per_task=3, train_per_class=5,
                                   test_per_class=2, image_shape=(4, 4, 1))
    np.testing.assert_array_equal(again[2].x_train, stream[2].x_train)
    other = synthetic_image_stream(jax.random.key(1), num_tasks=4, classes_per_task=3,
                                   train_per_class=5, test_per_class=2, image_shape=(4, 4, 1))
    assert [e.classes for e in other] != [e.classes for e in stream]
    with pytest.raises(ValueError, match="num_tasks must be a positive integer, got 0"):
        synthetic_image_stream(key, num_tasks=0)


def test_minibatch_indices(key):
    idx = minibatch_indices(key, 10, 3, epochs=2)
    assert idx.shape == (6, 3)  # 3 full minibatches per epoch, the remainder dropped
    for epoch in np.asarray(idx).reshape(2, 9):
        assert len(set(epoch.tolist())) == 9
    with pytest.raises(ValueError, match="batch_size must be in 1..10"):
        minibatch_indices(key, 10, 11, epochs=1)


def test_scan_visits_every_minibatch_with_its_own_key(key):
    data = Batch(jnp.arange(12.0)[:, None], jnp.zeros(12, jnp.int32))

    def step(total, batch, k):
        return total + batch.x.sum(), {"draw": jax.random.uniform(k)}

    total, metrics = jax.jit(
        lambda d, k: scan_minibatches(step, 0.0, d, k, epochs=3, batch_size=4)
    )(data, key)
    assert float(total) == 3 * sum(range(12))
    assert metrics["draw"].shape == (9,) and len(set(np.asarray(metrics["draw"]).tolist())) == 9


def test_map_chunks_covers_every_example_once_with_a_remainder():
    from jaxcl.core.chunks import map_chunks

    x = jnp.arange(23.0)
    calls = []
    out = map_chunks(lambda c: (calls.append(c.shape), 2 * c + c.mean() * 0)[1], x, 5)
    np.testing.assert_array_equal(out, 2 * x)
    assert calls == [(5,), (3,)]  # the full chunks under lax.map, then the remainder
    rows = map_chunks(lambda xy: xy[0] + xy[1], (x, x), 30)  # one chunk when it holds them all
    np.testing.assert_array_equal(rows, 2 * x)
