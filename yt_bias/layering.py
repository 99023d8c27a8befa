"""The package's layer map: every module of ``yt_bias`` in one layer, lowest first.

A module imports only from its own layer or from the layers below it, and no two modules import
each other, directly or through others. ``tests/test_layering.py`` parses every module's imports
(at module level and inside functions) and fails on an import that goes up a layer, on an import
cycle, and on a module that is missing here: a new module is added to the tuple of its layer.

The layers follow the data flow: configuration and feature descriptions; data sets; the model's
parts (towers, frequency estimators, losses, negatives, the model); evaluation; training drivers
and run directories; serving; integrations with other libraries; studies and experiment grids;
entry points (the command line, the cluster process, the package's public façade).

Names are dotted module names; a package's ``__init__`` is the package's own name.
"""

from __future__ import annotations

PACKAGE = "yt_bias"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("yt_bias._keras", "yt_bias._version", "yt_bias.config", "yt_bias.features", "yt_bias.layering")),
    (
        "data",
        (
            "yt_bias.data",
            "yt_bias.data.dataset",
            "yt_bias.data.download",
            "yt_bias.data.drift",
            "yt_bias.data.impressions",
            "yt_bias.data.interactions",
            "yt_bias.data.loading",
            "yt_bias.data.mind",
            "yt_bias.data.movielens",
            "yt_bias.data.recbole",
            "yt_bias.data.shards",
            "yt_bias.data.splits",
            "yt_bias.data.synthetic",
            "yt_bias.data.synthetic_shards",
        ),
    ),
    (
        "core",
        (
            "yt_bias.loss_inputs",
            "yt_bias.blockwise_softmax",
            "yt_bias.frequency",
            "yt_bias.frequency_baselines",
            "yt_bias.losses",
            "yt_bias.model",
            "yt_bias.negatives",
            "yt_bias.towers",
        ),
    ),
    ("evaluation", ("yt_bias.evaluation", "yt_bias.evaluation_blocks", "yt_bias.next_day")),
    (
        "training",
        (
            "yt_bias.distribute",
            "yt_bias.divergence",
            "yt_bias.ranking",
            "yt_bias.run_directory",
            "yt_bias.stream",
            "yt_bias.train",
            "yt_bias.train_files",
        ),
    ),
    ("serving", ("yt_bias.index", "yt_bias.serving")),
    ("integrations", ("yt_bias.baselines", "yt_bias.baselines.tfrs_retrieval", "yt_bias.tfrs")),
    (
        "studies",
        (
            "yt_bias.experiments",
            "yt_bias.experiments.comparison",
            "yt_bias.experiments.drift",
            "yt_bias.experiments.estimand",
            "yt_bias.experiments.strategies",
            "yt_bias.experiments.table1",
            "yt_bias.experiments.tfrs_drop_in",
            "yt_bias.pipeline",
            "yt_bias.plots",
            "yt_bias.simulation",
            "yt_bias.studies",
            "yt_bias.studies.figures",
            "yt_bias.studies.inclusion",
            "yt_bias.studies.prop41",
            "yt_bias.studies.stream",
            "yt_bias.studies.tracing",
        ),
    ),
    (
        "entry points",
        (
            "yt_bias",
            "yt_bias.__main__",
            "yt_bias.cli",
            "yt_bias.cluster_main",
            "yt_bias.commands",
            "yt_bias.commands.common",
            "yt_bias.commands.data",
            "yt_bias.commands.experiment",
            "yt_bias.commands.experiment_drift",
            "yt_bias.commands.experiment_estimand",
            "yt_bias.commands.experiment_strategies",
            "yt_bias.commands.experiment_table1",
            "yt_bias.commands.export",
            "yt_bias.commands.index",
            "yt_bias.commands.query",
            "yt_bias.commands.reproduce",
            "yt_bias.commands.simulate",
            "yt_bias.commands.train",
        ),
    ),
)

# Imports the layering test leaves out of the graph (they go up a layer or close a cycle), each with
# the reason why it stays for now: (importer, imported) -> reason.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    """The index of ``module``'s layer in :data:`LAYERS` (0 is the lowest).

    Args:
      module: a dotted module name such as ``"yt_bias.model"``.
    Returns:
      The layer index.
    Raises:
      KeyError: ``module`` is in no layer.
    """
    for index, (_, modules) in enumerate(LAYERS):
        if module in modules:
            return index
    raise KeyError(f"{module} is in no layer of yt_bias/layering.py: add it to the LAYERS entry of its layer.")
