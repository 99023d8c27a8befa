"""Benchmarks of record, importable: the report runs them in its own process, ``scripts/`` gives them a command line.

* :mod:`~yt_bias.benchmarks.serving`: the exported SavedModel against raw ScaNN and brute force.
* :mod:`~yt_bias.benchmarks.train_step`: train-step time and peak memory against batch size, ours
  against TFRS (each configuration in its own subprocess, ``python -m yt_bias.benchmarks.train_step``).

May import: everything below the report (serving, integrations, training, ...).
"""
