"""The edge of the library, where runs touch the world: checkpoints and resume, run folders with
their ``metrics.json``, TensorBoard event files, plots and progress bars. Nothing in
:mod:`jaxcl.core`, :mod:`jaxcl.models`, :mod:`jaxcl.learners` or :mod:`jaxcl.train` imports it."""
