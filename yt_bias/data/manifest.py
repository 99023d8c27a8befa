"""A data folder's identity: written whole or not at all, described by a manifest that readers check.

A data folder (what ``yt-bias data generate`` and ``yt-bias data convert`` write) holds training
shards, ``test/`` shards, the items table and the feature config (:mod:`yt_bias.data.shards`), and
``manifest.json``:

* ``format``: ``yt_bias.data/1``;
* ``source``: what wrote the folder and with which settings (the generator's arguments, or the
  converted data config);
* ``features``: the feature config (as in ``features.json``);
* ``items``: the items table's file, row count, size and SHA-256;
* ``splits``: per split (``train``, ``test``), its row count and each shard's file (relative to the
  folder), rows, size and SHA-256;
* ``dense_ranges``: each dense query feature's per-column min and max over the training rows
  (:mod:`yt_bias.data.ranges`; a run trained on the folder records them, the export clips to them).

Writing (:class:`DataFolderWriter`): the target is checked before anything is written (a file, a
run's workdir, a non-empty folder without ``overwrite`` are refused); everything goes into a
temporary folder beside the target (``.NAME.tmp-*``), the manifest last, and the folder is renamed
into place only when complete. A kill leaves the old folder (or none) and a temporary folder,
never a half-written data set under the target's name. ``overwrite`` replaces a previous data
folder whole, and only a data folder: a training run's workdir or a folder holding other files is
never replaced.

Reading (:func:`check_data_folder`): the shards to train on, the items table and the feature
config are checked against the manifest (sizes and SHA-256; a mismatch names both sides).
:func:`manifest_fingerprint` (the SHA-256 of ``manifest.json``) identifies the data of a run.

SHA-256 costs one read of each file: checking a 264 MiB folder (100,000 items, 1M rows) took
0.62 s (426 MiB/s) against 14.7 s to generate it (4.2 %), on a shared 2-core machine
(``python scripts/bench_data_folder.py --out runs/bench_data_folder``); at that rate the 4.5 GiB of
the 1M-item, 20M-interaction data set take about 11 s, against 329 s to generate and 1,176 s for
one training epoch (``docs/scale.md``). ``hashes=False`` checks sizes only (0.06 s).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

from yt_bias.data.shards import FEATURES_FILE, ITEMS_FILE, SHARD_SUFFIX, TEST_DIR, ShardError, check_shard_items
from yt_bias.features import FeatureConfig

MANIFEST_FILE = "manifest.json"
FORMAT = "yt_bias.data/1"
# What a training run's workdir holds: such a folder is never written into nor replaced.
RUN_MARKERS = ("run.json", "checkpoint", "config.json", "run.lock", "stream_state.json", "metrics.json")
# What a data folder may hold: only such a folder is replaced by ``overwrite``.
DATA_ENTRIES = (MANIFEST_FILE, ITEMS_FILE, FEATURES_FILE, TEST_DIR)
_CHUNK = 8 << 20


class DataFolderError(ShardError):
    """A data folder that cannot be written where asked, or whose files do not match its manifest."""


def file_sha256(path: str) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 8 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _describe(path: str, rows: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"size": os.path.getsize(path), "sha256": file_sha256(path)}
    if rows is not None:
        entry["rows"] = int(rows)
    return entry


def _is_data_entry(name: str) -> bool:
    return name in DATA_ENTRIES or name.endswith(SHARD_SUFFIX)


def check_output_folder(out: str, overwrite: bool = False, flag: str = "--out") -> None:
    """Checks that a data folder may be written at ``out``, before anything is written.

    Allowed: a path that does not exist (its parent is created), an empty folder, and with
    ``overwrite`` a folder that holds a data folder's files only (shards, ``test/``, items table,
    feature config, manifest).

    Raises:
      DataFolderError: ``out`` is a file; it is a training run's workdir (run.json, checkpoint, ...:
        always refused); it is not empty and ``overwrite`` is False; or ``overwrite`` is True but it
        holds files that are not a data folder's (they are never deleted).
    """
    if not isinstance(out, str) or not out.strip():
        raise DataFolderError(f"{flag}: expected a directory path; received {out!r}.")
    if os.path.lexists(out) and not os.path.isdir(out):
        raise DataFolderError(f"{flag} {out!r} is a file, not a directory; expected a new or empty directory.")
    if not os.path.isdir(out):
        parent = os.path.dirname(os.path.abspath(out))
        if os.path.lexists(parent) and not os.path.isdir(parent):
            raise DataFolderError(f"{flag} {out!r}: its parent {parent!r} is a file; expected a directory.")
        return
    entries = sorted(os.listdir(out))
    run_files = [name for name in entries if name in RUN_MARKERS]
    if run_files:
        raise DataFolderError(
            f"{flag} {out!r} is a training run's workdir (it holds {', '.join(run_files)}); a data set is never written "
            "into one, not even with --overwrite. Choose a new directory."
        )
    if not entries:
        return
    if not overwrite:
        raise DataFolderError(
            f"{flag} {out!r} exists and is not empty ({len(entries)} entries, e.g. {entries[0]!r}); nothing was written. "
            "Choose a new directory, or --overwrite to replace a previous data set there."
        )
    foreign = [name for name in entries if not _is_data_entry(name)]
    if foreign:
        raise DataFolderError(
            f"{flag} {out!r} holds files that are not a data set's ({', '.join(foreign[:3])}"
            f"{' ...' if len(foreign) > 3 else ''}); --overwrite only replaces a data folder. Choose a new directory."
        )


class DataFolderWriter:
    """Writes a data folder into a temporary folder beside ``out`` and renames it into place when complete.

    Use as a context manager: write into :attr:`path` (shards, ``test/``, items table, features),
    call :meth:`commit` with what the manifest records; leaving the block without :meth:`commit`
    (or with an exception) removes the temporary folder and leaves ``out`` as it was.

    Args:
      out: the target folder (checked by :func:`check_output_folder` at once).
      overwrite: replace a previous data folder at ``out``.
      flag: the option name used in error messages.
    """

    def __init__(self, out: str, overwrite: bool = False, flag: str = "--out"):
        check_output_folder(out, overwrite, flag)
        self.out = out
        self.overwrite = overwrite
        self.flag = flag
        parent = os.path.dirname(os.path.abspath(out))
        os.makedirs(parent, exist_ok=True)
        self.path = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(out))}.tmp-", dir=parent)
        self.manifest: dict[str, Any] | None = None

    def commit(
        self,
        features: FeatureConfig,
        splits: Mapping[str, Mapping[str, int]],
        source: Mapping[str, Any],
        dense_ranges: Mapping[str, Any] | None = None,
    ) -> dict:
        """Writes the manifest, then renames the temporary folder to ``out``; returns the manifest.

        Args:
          features: the feature config of the data set.
          splits: split name -> {shard path (inside :attr:`path`) -> rows}.
          source: what wrote the data and its settings.
          dense_ranges: the training rows' dense feature ranges (:func:`~yt_bias.data.ranges.dense_ranges`).
        Raises:
          DataFolderError: ``out`` changed meanwhile so that it may no longer be replaced.
        """
        items_path = os.path.join(self.path, ITEMS_FILE)
        with np.load(items_path, allow_pickle=False) as archive:
            num_items = len(archive[archive.files[0]]) if archive.files else 0
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "source": dict(source),
            "features": features.to_dict(),
            "items": {"file": ITEMS_FILE, **_describe(items_path, num_items)},
            "features_file": {"file": FEATURES_FILE, **_describe(os.path.join(self.path, FEATURES_FILE))},
            "splits": {},
            "dense_ranges": dict(dense_ranges or {}),
        }
        for split, files in splits.items():
            shards = [
                {"file": os.path.relpath(path, self.path), **_describe(path, rows)} for path, rows in sorted(files.items())
            ]
            manifest["splits"][split] = {"rows": int(sum(files.values())), "shards": shards}
        with open(os.path.join(self.path, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        check_output_folder(self.out, self.overwrite, self.flag)  # again: it may have changed while we wrote
        old = None
        if os.path.isdir(self.out) and os.listdir(self.out):
            old = tempfile.mkdtemp(prefix=f".{os.path.basename(os.path.abspath(self.out))}.old-", dir=os.path.dirname(self.path))
            os.rename(self.out, os.path.join(old, "data"))
        elif os.path.isdir(self.out):
            os.rmdir(self.out)
        os.rename(self.path, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self.manifest = manifest
        return manifest

    def __enter__(self) -> DataFolderWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.manifest is None:
            shutil.rmtree(self.path, ignore_errors=True)


def read_manifest(directory: str) -> dict | None:
    """The manifest of a data folder, or None when it has none (written by an older version, or by hand).

    Raises:
      DataFolderError: the manifest is damaged or of an unknown format.
    """
    path = os.path.join(directory, MANIFEST_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataFolderError(f"manifest {path!r} is damaged ({error}); regenerate the data folder.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        received = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise DataFolderError(f"manifest {path!r}: expected format {FORMAT!r}; received {received!r}.")
    return manifest


def split_files(directory: str, manifest: Mapping[str, Any], split: str) -> list[str]:
    """The shard paths of one split (``train``, ``test``) of a manifest, under ``directory``, in order."""
    return [os.path.join(directory, entry["file"]) for entry in manifest["splits"].get(split, {}).get("shards", [])]


def manifest_fingerprint(directory: str) -> str | None:
    """The SHA-256 of a data folder's ``manifest.json`` (None without one): the identity of its data."""
    path = os.path.join(directory, MANIFEST_FILE)
    return file_sha256(path) if os.path.isfile(path) else None


def _short(digest: str | None) -> str:
    return (digest or "none")[:12]


def check_data_folder(directory: str, files: Iterable[str], num_items: int, hashes: bool = True) -> dict[str, Any]:
    """Checks the shards to read, the items table and the feature config against the folder's manifest.

    Args:
      directory: the data folder (manifest, items table, feature config).
      files: the shard files that will be read (all or some of a split's).
      num_items: the rows of the items table as read.
      hashes: compare SHA-256 of every file (False: sizes only).
    Returns:
      ``{"directory", "manifest_sha256", "rows", "splits", "dense_ranges"}``: the folder (absolute),
      the manifest's fingerprint, the rows of ``files`` and of each split as the manifest records
      them, the training rows' dense feature ranges. Without a manifest these four are None: a warning says so, and only the first row block of each shard
      is checked to point into the items table.
    Raises:
      DataFolderError: a file is not in the manifest, or its size or SHA-256, or the items table's
        rows, differ from it; the message names the file and both values.
    """
    manifest = read_manifest(directory)
    files = [os.path.abspath(f) for f in files]
    if manifest is None:
        warnings.warn(
            f"data folder {directory!r} has no {MANIFEST_FILE}: its shards and items table are checked against each "
            "other by their first row blocks only (yt-bias data generate/convert write a manifest).",
            stacklevel=2,
        )
        for path in files:
            check_shard_items(path, num_items)
        return {"directory": os.path.abspath(directory), "manifest_sha256": None, "rows": None, "splits": None, "dense_ranges": None}
    manifest_path = os.path.join(directory, MANIFEST_FILE)
    items = manifest.get("items", {})
    if int(items.get("rows", -1)) != int(num_items):
        raise DataFolderError(
            f"items table {os.path.join(directory, ITEMS_FILE)!r} has {num_items} items; the shards' manifest "
            f"{manifest_path!r} records {items.get('rows')} items: the items table belongs to another data set."
        )
    checks = [(ITEMS_FILE, items), (FEATURES_FILE, manifest.get("features_file", {}))]
    shards = {
        os.path.abspath(os.path.join(directory, entry["file"])): (split, entry)
        for split, section in manifest.get("splits", {}).items()
        for entry in section.get("shards", [])
    }
    rows = 0
    for path in files:
        if path not in shards:
            raise DataFolderError(
                f"shard {path!r} is not listed in the manifest {manifest_path!r} (it lists {len(shards)} shards); "
                "it belongs to another data set or was added by hand."
            )
        rows += int(shards[path][1].get("rows", 0))
        checks.append((os.path.relpath(path, directory), shards[path][1]))
    for name, entry in checks:
        path = os.path.join(directory, name)
        if not os.path.isfile(path):
            raise DataFolderError(f"{path!r} is listed in the manifest {manifest_path!r} but does not exist.")
        size = os.path.getsize(path)
        if size != entry.get("size"):
            raise DataFolderError(
                f"{path!r} has {size} bytes; the manifest {manifest_path!r} records {entry.get('size')} bytes: "
                "the file was changed or replaced after the data set was written."
            )
        if hashes:
            digest = file_sha256(path)
            if digest != entry.get("sha256"):
                raise DataFolderError(
                    f"{path!r} has SHA-256 {_short(digest)}...; the manifest {manifest_path!r} records "
                    f"{_short(entry.get('sha256'))}...: the file was changed or replaced after the data set was written."
                )
    return {
        "directory": os.path.abspath(directory),
        "manifest_sha256": manifest_fingerprint(directory),
        "rows": rows,
        "splits": {split: int(section.get("rows", 0)) for split, section in manifest.get("splits", {}).items()},
        "dense_ranges": manifest.get("dense_ranges") or None,
    }


_Report = TypeVar("_Report", bound="DataFolderReport")


@dataclasses.dataclass
class DataFolderReport:
    """What a writer put into a data folder, as the folder's manifest records it.

    Attributes:
      num_items: rows of the items table.
      num_train, num_test: rows written to the training and test shards.
      train_files, test_files: the shard paths.
      manifest: the data folder's manifest.
    """

    num_items: int
    num_train: int
    num_test: int
    train_files: list[str]
    test_files: list[str]
    manifest: dict

    @classmethod
    def of_folder(cls: type[_Report], out: str, manifest: dict, **fields: Any) -> _Report:
        """The report of the data folder ``out`` written with ``manifest``; ``fields`` are a subclass's own."""
        splits = manifest["splits"]
        return cls(
            num_items=manifest["items"]["rows"],
            num_train=splits["train"]["rows"],
            num_test=splits.get("test", {}).get("rows", 0),
            train_files=split_files(out, manifest, "train"),
            test_files=split_files(out, manifest, "test"),
            manifest=manifest,
            **fields,
        )
