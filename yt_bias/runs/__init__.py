"""Trained runs as their readers see them: the model a config describes, and a run directory read back.

* :mod:`~yt_bias.runs.model`: the compiled two-tower model of an experiment config.
* :mod:`~yt_bias.runs.reader`: a run directory's layout and its read side (record, config, corpus
  snapshot, checkpoint restore); training writes it (:mod:`yt_bias.training.run_directory`),
  serving and the command line read it.

May import: base modules, :mod:`yt_bias.data`, :mod:`yt_bias.core`, :mod:`yt_bias.retrieval`.
"""
