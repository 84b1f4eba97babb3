"""Experiment modules, each runnable as ``python -m experiments.<name>``; ``run`` returns metrics."""
