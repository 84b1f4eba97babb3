"""Your own data as a stream: the documented Python way in for arrays already in memory.

``from_arrays(x_train, y_train, x_test, y_test, *, classes_per_task, seed, class_order=None,
num_tasks=None)`` returns the same ``list[Experience]`` (:class:`jaxcl.types.Experience`) as every
named benchmark, ready for the training loop and every learner: experience ``t`` holds the
``t``-th ``classes_per_task`` classes of the order (drawn from ``seed``, or ``class_order``: a
permutation or subset of ``y_train``'s labels, or a text file of them), labels restarting at 0,
inputs normalised per channel with the training split's exact statistics (``uint8`` images
divided by 255 first)::

    from jaxcl.streams import from_arrays

    stream = from_arrays(x_train, y_train, x_test, y_test, classes_per_task=2, seed=0)

Files go through :func:`jaxcl.data.load_benchmark`: ``"arrays"`` for a ``.npz`` file,
``"image_folder"`` for a folder ``path/train/<class>/*.png`` and ``path/test/<class>/...``. The
implementation is :mod:`jaxcl.data.user_data`'s; nothing here imports TensorFlow.
"""

from jaxcl.data.user_data import from_arrays

__all__ = ["from_arrays"]
