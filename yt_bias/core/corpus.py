"""An item corpus referred to by file and fingerprint, so that a config names the corpus instead of copying it.

A layer whose state depends on the corpus (the negatives' samplers draw from it) puts
:func:`corpus_reference` in its config: ``{"path", "sha256"}``, the ``.npz`` file that holds the
corpus and the SHA-256 of its arrays (:func:`array_digest`: names, dtypes, shapes and bytes, the
same hash a run directory records for its ``items.npz`` as ``items_sha256``). At a million items
the config stays a few hundred bytes. The file is content-addressed
(``corpus-<sha256>.npz`` under :func:`corpus_directory`), written once, atomically; rebuilding
from the config reads it back and refuses a file whose arrays no longer match the fingerprint.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

CORPUS_DIR_ENV = "YT_BIAS_CORPUS_DIR"


def array_digest(arrays: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of named arrays: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(np.asarray(arrays[name]))
        if value.dtype == object:
            value = value.astype(str)
        digest.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def corpus_directory() -> str:
    """Where corpus files go: ``$YT_BIAS_CORPUS_DIR``, else ``$XDG_CACHE_HOME/yt_bias/corpora`` (``~/.cache`` by default)."""
    explicit = os.environ.get(CORPUS_DIR_ENV)
    if explicit:
        return explicit
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "yt_bias", "corpora")


def corpus_reference(items: Mapping[str, np.ndarray]) -> dict[str, str]:
    """``{"path", "sha256"}`` of the corpus ``items``, its file written first if it does not exist yet.

    Args:
      items: item feature name -> [num_items, ...] array.
    Returns:
      The absolute path of ``corpus-<sha256>.npz`` and the fingerprint.
    """
    arrays = {name: np.asarray(value).astype(str) if np.asarray(value).dtype == object else np.asarray(value)
              for name, value in items.items()}
    sha = array_digest(arrays)
    folder = corpus_directory()
    path = os.path.abspath(os.path.join(folder, f"corpus-{sha}.npz"))
    if not os.path.isfile(path):
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".corpus-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
    return {"path": path, "sha256": sha}


def is_corpus_reference(value: Any) -> bool:
    """Whether ``value`` is a :func:`corpus_reference` (a mapping of exactly ``path`` and ``sha256``)."""
    return isinstance(value, Mapping) and set(value) == {"path", "sha256"}


def load_corpus(reference: Mapping[str, str]) -> dict[str, np.ndarray]:
    """The arrays a :func:`corpus_reference` names, checked against its fingerprint.

    Raises:
      ValueError: the file is missing or unreadable, or its arrays do not match ``sha256``.
    """
    path, sha = reference["path"], reference["sha256"]
    if not os.path.isfile(path):
        raise ValueError(f"items: the corpus file {path!r} (sha256 {sha[:12]}...) does not exist; rebuild the model from its data.")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"items: the corpus file {path!r} is unreadable ({error}).") from None
    found = array_digest(arrays)
    if found != sha:
        raise ValueError(f"items: the corpus file {path!r} has sha256 {found[:12]}...; the config expects {sha[:12]}... (it changed).")
    return arrays
