"""The paper's frequency-estimation studies, run on the package's own estimator.

* :mod:`yt_bias.studies.inclusion`: exact inclusion probabilities of successive sampling without
  replacement, and the sampler of such batches.
* :mod:`yt_bias.studies.stream`: the section 6.1 stream (popularity reversed half-way) and the
  estimator's total-variation error on it.
* :mod:`yt_bias.studies.figures`: Figures 4 and 5 (learning rate; number of hashes at equal
  memory), the reference run, comparison tables.
* :mod:`yt_bias.studies.prop41`: Proposition 4.1 (bias and variance of the estimated interval on
  i.i.d. gaps), closed forms with the misprints corrected, and its measurement.

May import: everything below the entry points.
"""

from yt_bias.studies.figures import (
    REFERENCE_STEPS,
    REFERENCE_TV,
    checkpoint_steps,
    compare_with_reference,
    figure_settings,
    markdown_table,
    run_figure,
    variant_comparison,
)
from yt_bias.studies.inclusion import inclusion_probabilities, sample_batches
from yt_bias.studies.prop41 import Prop41Config, Prop41Result, prop41_closed_forms, run_prop41
from yt_bias.studies.stream import (
    EstimatorSetting,
    SimulationResult,
    SimulationStreamConfig,
    numpy_reference_errors,
    run_stream_simulation,
)

__all__ = [
    "REFERENCE_STEPS",
    "REFERENCE_TV",
    "EstimatorSetting",
    "Prop41Config",
    "Prop41Result",
    "SimulationResult",
    "SimulationStreamConfig",
    "checkpoint_steps",
    "compare_with_reference",
    "figure_settings",
    "inclusion_probabilities",
    "markdown_table",
    "numpy_reference_errors",
    "prop41_closed_forms",
    "run_figure",
    "run_prop41",
    "run_stream_simulation",
    "sample_batches",
    "variant_comparison",
]
