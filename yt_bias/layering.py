"""The package's layer map: every module of ``yt_bias`` in one layer, lowest first.

A module imports only from its own layer or from the layers below it, and no two modules import
each other, directly or through others. ``tests/test_layering.py`` parses every module's imports
(at module level and inside functions) and fails on an import that goes up a layer, on an import
cycle, and on a module that is in no layer: a new subpackage is added to the tuple of its layer.

The layers follow the data flow: configuration and feature descriptions; data sets; the model's
parts (towers, frequency estimators, losses, negatives, the model); retrieval (corpus embedding,
exact and ScaNN top-K, most-popular); trained runs read back (and the model a config describes);
evaluation; training drivers and the run directories they write; serving; integrations with other libraries (and the Keras 3 path, any backend); studies, experiment grids and benchmarks;
the report that runs them; entry points (the command line, the cluster process, the package's public façade).

Names are dotted module names; a package's ``__init__`` is the package's own name, and
``"pkg.*"`` stands for the package ``pkg`` and every module under it.
"""

from __future__ import annotations

PACKAGE = "yt_bias"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("yt_bias._keras", "yt_bias._lazy", "yt_bias._version", "yt_bias.arguments", "yt_bias.config", "yt_bias.estimands", "yt_bias.features", "yt_bias.layering", "yt_bias.source_contract")),
    ("data", ("yt_bias.data.*",)),
    ("core", ("yt_bias.core.*",)),
    ("retrieval", ("yt_bias.retrieval.*",)),
    ("runs", ("yt_bias.runs.*",)),
    ("evaluation", ("yt_bias.evaluation.*",)),
    ("ranking", ("yt_bias.ranking.*",)),
    ("training", ("yt_bias.training.*",)),
    ("serving", ("yt_bias.serving.*",)),
    ("integrations", ("yt_bias.integrations.*", "yt_bias.keras3.*")),
    ("studies", ("yt_bias.studies.*", "yt_bias.experiments.*", "yt_bias.benchmarks.*")),
    ("report", ("yt_bias.report.*",)),
    ("entry points", ("yt_bias", "yt_bias.__main__", "yt_bias.cli.*", "yt_bias.testing.*")),
)

# Imports the layering test leaves out of the graph (they go up a layer or close a cycle), each with
# the reason why it stays for now: (importer, imported) -> reason.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def layer_of(module: str) -> int:
    """The index of ``module``'s layer in :data:`LAYERS` (0 is the lowest).

    Args:
      module: a dotted module name such as ``"yt_bias.core.model"``.
    Returns:
      The layer index.
    Raises:
      KeyError: ``module`` is in no layer.
    """
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if module == entry or (entry.endswith(".*") and (module == entry[:-2] or module.startswith(entry[:-1]))):
                return index
    raise KeyError(f"{module} is in no layer of yt_bias/layering.py: add it (or its package) to the LAYERS entry of its layer.")
