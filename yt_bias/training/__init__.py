"""Training drivers, all sharing the model's one train step, and the run directory they write.

* :mod:`~yt_bias.training.train`: build a model from a config; one device or a tf.distribute strategy.
* :mod:`~yt_bias.training.run_directory`: a run's directory (config, fingerprint, checkpoints,
  metrics, atomic state); every driver writes through it.
* :mod:`~yt_bias.training.distribute`: strategies and parameter-server placement;
  :mod:`~yt_bias.training.cluster`: the parameter-server cluster's tasks (server and chief).
* :mod:`~yt_bias.training.day_by_day`: day-by-day training with resume.
* :mod:`~yt_bias.training.from_files`: training from sharded files larger than memory.
* :mod:`~yt_bias.training.divergence`: stop a run whose loss diverges.

May import: everything below it (base, data, core, evaluation, ranking).
"""
