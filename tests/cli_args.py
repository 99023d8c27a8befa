"""Command-line arguments that the CLI tests share."""

from __future__ import annotations


def set_args(*assignments: str) -> list[str]:
    """``--set A --set B ...``: one ``--set`` option per ``key=value`` assignment, in order."""
    return [arg for assignment in assignments for arg in ("--set", assignment)]


# A tiny model evaluated at k = 5 and 10: enough for a CLI run on a few dozen users.
TINY_MODEL = set_args("model.hidden_units=8", "model.embedding_dim=8", "eval.ks=5,10")
