"""The frequency-estimation studies under their former module name; they live in :mod:`yt_bias.studies`.

``StreamConfig`` is the former name of :class:`~yt_bias.studies.stream.SimulationStreamConfig`
(the stream of the simulation, not :class:`yt_bias.config.StreamConfig`, the day-by-day training
stream).
"""

from yt_bias.studies import *  # noqa: F403
from yt_bias.studies import __all__ as _studies_all
from yt_bias.studies.stream import SimulationStreamConfig as StreamConfig

__all__ = [*_studies_all, "StreamConfig"]
