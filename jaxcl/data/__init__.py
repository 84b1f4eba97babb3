"""Continual-learning streams: every benchmark by name (:mod:`jaxcl.data.benchmarks`), built in or
read through TFDS, and your own files; each a list of on-device experiences
(:class:`jaxcl.types.Experience`)."""

from jaxcl.data.benchmarks import (
    BENCHMARK_OPTIONS,
    BENCHMARKS,
    OWN_DATA,
    SYNTHETIC,
    check_benchmark,
    load_benchmark,
    make_stream,
    manual_folders,
)

__all__ = ["BENCHMARK_OPTIONS", "BENCHMARKS", "OWN_DATA", "SYNTHETIC", "check_benchmark",
           "load_benchmark", "make_stream", "manual_folders"]
