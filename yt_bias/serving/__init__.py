"""Serving: the item index (ScaNN or brute force) and the one SavedModel of query tower + index.

* :mod:`~yt_bias.serving.index`: build an index over the item embeddings.
* :mod:`~yt_bias.serving.export`: export and load the SavedModel, with per-user exclusions.

May import: everything below it (base, data, core, evaluation, training).
"""
