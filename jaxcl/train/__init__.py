"""The one experience loop every learner runs through (:mod:`jaxcl.train.loop`), the loops over an
epoch's minibatches (:mod:`jaxcl.train.steps`) and seeds and devices (:mod:`jaxcl.train.parallel`).
It reports through callbacks and never prints, writes files or draws."""
