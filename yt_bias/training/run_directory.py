"""A training run directory: what it holds, who may write it, and how it is written.

This is the write side (the layout's names and the readers are :mod:`yt_bias.runs.reader`'s).
One :class:`RunDirectory` owns a workdir of ``yt-bias train`` (and of the stream and cluster
entry points). Its layout:

* ``config.json``: the experiment config; ``features.json``: the feature spec of both towers;
* ``items.npz``: the item corpus snapshot the model was trained on (one array per item feature);
  export, index and query use it, never a corpus rebuilt from the config;
* ``run.json``: the run's fingerprint (kind, config, data source and a content hash of the data,
  a hash of the corpus snapshot, package version), its status (``running``, ``complete`` or
  ``failed``) and the checkpoint it last committed;
* ``checkpoint/``: TensorFlow checkpoints, one layout for every driver (:func:`model_checkpoint`:
  the model with its estimator state and negatives' memory, the optimizer, and the driver's own
  counters); ``metrics.json``: written only by a finished run, the estimator's error in it
  measured one way for every driver (:func:`estimator_tv_error`);
* ``run.lock``: held while a process writes the directory (a second concurrent run is refused;
  the lock of a dead process is taken over with a warning).

Every JSON or npz file is written to a temporary name in the same folder and renamed
(:func:`write_json_atomic`, :func:`write_npz_atomic`), so a kill leaves the old file or the new
one, never half of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

from yt_bias.data.ranges import dense_ranges

from yt_bias._keras import tf
from yt_bias._version import __version__
from yt_bias.core.corpus import array_digest
from yt_bias.core.frequency import total_variation_error
from yt_bias.data.dataset import batch_frequencies
from yt_bias.runs.reader import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    FEATURES_FILE,
    ITEMS_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RUN_FILE,
    VOLATILE_FIELDS,
    config_differences,
    json_default,
    read_json,
)

MODES = ("refuse", "overwrite", "resume")
# Files a run owns; --overwrite removes these and nothing else.
OWNED = (RUN_FILE, METRICS_FILE, CONFIG_FILE, FEATURES_FILE, ITEMS_FILE, "stream_state.json", CHECKPOINT_DIR, "tensorboard")
# Config sections that shape the model and its checkpoint: --resume may not change them.
MODEL_SECTIONS = ("variant", "data", "model", "estimator", "negatives")


class RunConflict(ValueError):
    """A workdir that holds another run, is in use by another process, or is not a directory."""


# ----------------------------------------------------------------------------- atomic files
def _write_atomic(path: str, binary: bool, write: Callable[[Any], None]) -> None:
    """Calls ``write(file)`` on a temporary file in ``path``'s folder, syncs it, then renames it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, data: Any) -> None:
    """Writes ``data`` as JSON to ``path`` through a temporary file in the same folder and ``os.replace``."""
    _write_atomic(path, False, lambda f: json.dump(data, f, indent=2, sort_keys=True, default=json_default))


def write_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
    """Writes arrays to an ``.npz`` at ``path`` through a temporary file in the same folder."""
    _write_atomic(path, True, lambda f: np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()}))


def ensure_directory(path: str, what: str) -> str:
    """Creates ``path`` as a directory if needed; a clear error when it exists as a file.

    Raises:
      RunConflict: ``path`` (or one of its parents) is a file.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunConflict(f"{what}: {path!r} is a file; expected a directory (or a path that does not exist yet).")
    try:
        os.makedirs(path, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise RunConflict(f"{what}: cannot create the directory {path!r}: a parent of it is a file.") from None
    return path


# ----------------------------------------------------------------------------- fingerprints
def dataset_digest(dataset) -> str:
    """Content hash of a :class:`~yt_bias.data.dataset.RecDataset`: its items, train and test arrays."""
    parts = {f"items/{k}": v for k, v in dataset.items.items()}
    parts.update({f"train/{k}": v for k, v in dataset.train.items()})
    parts.update({f"test/{k}": v for k, v in dataset.test.items()})
    return array_digest(parts)


def package_version() -> str:
    return __version__


def fingerprint(kind: str, config, dataset, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What identifies a run: its kind, config, data source and content, and corpus snapshot.

    Args:
      kind: ``'train'``, ``'stream'`` or ``'cluster'``.
      config: the :class:`~yt_bias.config.ExperimentConfig`.
      dataset: the :class:`~yt_bias.data.dataset.RecDataset` it trains on.
      extra: more identity fields (e.g. the stream's source).
    """
    config_dict = json.loads(json.dumps(config.to_dict(), default=json_default))
    record = {
        "kind": kind,
        "config": config_dict,
        "data": {"source": config.data.source, "path": config.data.path, "name": dataset.name, "sha256": dataset_digest(dataset)},
        "items_sha256": array_digest(dataset.items),
        "num_items": int(dataset.num_items),
        "package_version": package_version(),
        # What serving clips dense query inputs to (yt_bias.data.ranges); a file-trained run's come from its manifest.
        "dense_ranges": dense_ranges(dataset.train, dataset.features.query),
    }
    record.update(extra or {})
    return record


def identity_differences(old: Mapping, new: Mapping, ignore: Iterable[str] = VOLATILE_FIELDS) -> list[str]:
    """Why two fingerprints are different runs: kind, config fields, data content (empty: same run)."""
    reasons = []
    if old.get("kind") != new.get("kind"):
        reasons.append(f"kind ({old.get('kind')} -> {new.get('kind')})")
    reasons += [f"config {f}" for f in config_differences(old.get("config", {}), new.get("config", {}), ignore)]
    old_data = old.get("data", {}).get("sha256")
    if old_data is not None and old_data != new.get("data", {}).get("sha256"):
        reasons.append("data content (sha256)")
    for key in ("stream_source",):
        if key in old and old.get(key) != new.get(key):
            reasons.append(key.replace("_", " "))
    return reasons


# ----------------------------------------------------------------------------- lock
def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file (``O_CREAT | O_EXCL``) holding the owner's PID and host.

    A lock whose PID is dead on this host is stale: it is taken over with a warning.
    """

    def __init__(self, path: str):
        self.path = path
        self.held = False

    def acquire(self) -> None:
        """Raises RunConflict when a live process holds the lock."""
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:
                    continue  # removed or unreadable: try again
                pid, host = owner.get("pid"), owner.get("host")
                if isinstance(pid, int) and host == me["host"] and pid != me["pid"] and not _pid_alive(pid):
                    warnings.warn(f"{self.path}: taking over the stale lock of process {pid}, which is no longer running.",
                                  RuntimeWarning, stacklevel=3)
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(self.path)
                    continue
                raise RunConflict(
                    f"workdir {os.path.dirname(self.path)!r} is in use by process {pid} on {host} (lock {self.path}); "
                    "wait for it to finish or use another workdir (remove the lock file only if that process is gone)."
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(me, f)
            self.held = True
            return
        raise RunConflict(f"{self.path}: could not take the lock of the workdir; retry.")

    def _owner(self) -> dict | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
            return data if isinstance(data, dict) else {"pid": None, "host": None}
        except FileNotFoundError:
            return None
        except (ValueError, OSError):
            # A half-written lock (killed between create and write): stale if older than a few seconds.
            try:
                age = time.time() - os.path.getmtime(self.path)
            except OSError:
                return None
            if age > 5:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)
                return None
            return {"pid": None, "host": None}

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            self.held = False


# ----------------------------------------------------------------------------- the run directory
@dataclasses.dataclass
class RunDirectory:
    """A run directory being written by this process (see the module docstring for its layout).

    Use :meth:`start` (which takes the lock) as a context manager; an exception inside marks the
    run failed (a resumable run only records the error and keeps its committed state) and
    releases the lock.
    """

    path: str
    record: dict
    lock: RunLock | None = None
    resumed: bool = False
    resumable: bool = False

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    @property
    def checkpoint_dir(self) -> str:
        return self.file(CHECKPOINT_DIR)

    # -- opening
    @classmethod
    def start(
        cls,
        path: str,
        config,
        dataset,
        kind: str = "train",
        mode: str = "overwrite",
        extra: Mapping[str, Any] | None = None,
        resumable: bool = False,
        volatile: Iterable[str] = VOLATILE_FIELDS,
    ) -> RunDirectory:
        """Takes the workdir for a run: checks what it holds, writes config, features, corpus snapshot and run.json.

        Args:
          path: the workdir.
          config, dataset: the run's config and data.
          kind: 'train', 'stream' or 'cluster'.
          mode: what to do when the workdir holds another run (a different fingerprint):
            'refuse' (an error), 'overwrite' (remove that run's files and start over) or 'resume'
            (continue it under the new config; only fields outside the model sections may differ).
          resumable: the kind resumes by itself (stream): the same run found in the workdir is continued,
            not restarted.
          volatile: config fields that may differ within one run (e.g. the number of stream days).
        Raises:
          RunConflict: a file where the workdir should be, another live process holds it, another run
            is in it and ``mode='refuse'``, or ``mode='resume'`` would change the model.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; received {mode!r}.")
        ensure_directory(path, "workdir")
        lock = RunLock(os.path.join(path, LOCK_FILE))
        lock.acquire()
        try:
            new = fingerprint(kind, config, dataset, extra)
            try:
                old = cls._existing(path)
            except ValueError as error:  # a damaged run.json or config.json
                if mode != "overwrite":
                    raise RunConflict(f"workdir {path!r}: {error} Use --overwrite to replace that run, or a new --workdir.") from None
                old = {"kind": "unknown (damaged record)", "config": {}}
            continuing = False
            if old is not None:
                reasons = identity_differences(old, new, volatile)
                if old.get("status") == "failed":
                    continuing = False
                elif not reasons:
                    continuing = resumable
                elif mode == "refuse":
                    raise RunConflict(
                        f"workdir {path!r} holds another run ({'; '.join(reasons[:6])} differ"
                        f"{' ...' if len(reasons) > 6 else ''}). Use a new --workdir, --overwrite to replace that run"
                        + (", or --resume to continue it with this config." if resumable else ".")
                    )
                elif mode == "resume":
                    if not resumable:
                        raise RunConflict(f"--resume: a {kind!r} run restarts from scratch; use --overwrite to replace the run in {path!r}.")
                    fixed = [r for r in reasons if not r.startswith("config ") or r.split(" ", 1)[1].split(".")[0] in MODEL_SECTIONS]
                    if fixed:
                        raise RunConflict(
                            f"--resume cannot change {', '.join(fixed[:6])} of the run in {path!r} (its checkpoint "
                            "depends on them); use --overwrite or a new --workdir."
                        )
                    continuing = True
            if not continuing:
                cls._clear(path)
            run = cls(path, dict(new, status="running", started_at=time.time()), lock, resumed=continuing, resumable=resumable)
            if continuing and old is not None:
                run.record["checkpoint"] = old.get("checkpoint")
                run.record["history"] = list(old.get("history", [])) + [{"resumed_at": time.time()}]
            run._write_inputs(config, dataset)
            run.save_record()
            return run
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _existing(path: str) -> dict | None:
        """The fingerprint of the run in ``path`` (from run.json, or config.json of a run without one)."""
        run_path, config_path = os.path.join(path, RUN_FILE), os.path.join(path, CONFIG_FILE)
        if os.path.exists(run_path):
            return read_json(run_path, "run record")
        if os.path.exists(config_path):  # a run written without run.json: its config is all there is
            kind = "stream" if os.path.exists(os.path.join(path, "stream_state.json")) else "train"
            return {"kind": kind, "config": read_json(config_path, "config"), "data": {}}
        return None

    @staticmethod
    def _clear(path: str) -> None:
        """Removes the files a run owns (run.json first: a kill mid-way leaves no half-valid run)."""
        for name in OWNED:
            target = os.path.join(path, name)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            elif os.path.lexists(target):
                os.remove(target)

    def _write_inputs(self, config, dataset) -> None:
        write_npz_atomic(self.file(ITEMS_FILE), dataset.items)
        write_json_atomic(self.file(FEATURES_FILE), dataset.features.to_dict())
        write_json_atomic(self.file(CONFIG_FILE), config.to_dict())

    # -- writing
    def save_record(self) -> None:
        write_json_atomic(self.file(RUN_FILE), self.record)

    def commit_checkpoint(self, prefix: str) -> None:
        """Records ``prefix`` (a saved checkpoint) as the run's current one."""
        self.record["checkpoint"] = os.path.relpath(prefix, self.path)
        self.save_record()

    def finish(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Writes metrics.json (when given), then marks the run complete."""
        if metrics is not None:
            write_json_atomic(self.file(METRICS_FILE), dict(metrics))
        self.record.update(status="complete", finished_at=time.time())
        self.record.pop("error", None)
        self.save_record()

    def fail(self, reason: str) -> None:
        """Marks the run failed; its metrics.json (if any) is removed so that no result looks valid."""
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.file(METRICS_FILE))
        self.record.update(status="failed", error=reason[:2000], finished_at=time.time())
        self.save_record()

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc is not None and self.record.get("status") == "running":
                with contextlib.suppress(Exception):
                    if self.resumable:  # a resumable run keeps its committed state: the next run goes on from it
                        self.record["last_error"] = f"{type(exc).__name__}: {exc}"[:2000]
                        self.save_record()
                    else:
                        self.fail(f"{type(exc).__name__}: {exc}")
        finally:
            self.release()


# ----------------------------------------------------------------------------- what a run records of a model
def model_checkpoint(model, **counters):
    """The checkpoint of a run: the one layout every training driver saves and restores.

    Args:
      model: a compiled :class:`~yt_bias.core.model.TwoTowerModel` (towers, frequency source
        state, negatives' memory) with its ``optimizer``.
      counters: the driver's own progress variables, e.g. ``completed_days`` or ``closures_done``
        (scalar ``tf.Variable``s).
    Returns:
      A ``tf.train.Checkpoint`` of ``model``, ``optimizer`` and the counters.
    """
    return tf.train.Checkpoint(model=model, optimizer=model.optimizer, **counters)


def estimator_tv_error(frequency, item_ids, item_counts, batch_size: int) -> float | None:
    """The paper's estimation error ``(1/2B) sum_j |p_hat_j - p_j|`` of a frequency source.

    ``p_j`` are the exact per-batch frequencies of rows with ``item_counts`` on the scale of the
    source's ``estimand`` (inclusion probability or expected count). ``p_hat`` is read eagerly, or
    inside a ``tf.function`` when the source's variables live on parameter servers (eager reads of
    remote resources lose their static shape).

    Args:
      frequency: the model's frequency source (``probability(ids)``, ``estimand``), or None.
      item_ids: [num_items] the corpus item IDs.
      item_counts: [num_items] rows of each item in the data the source was trained on.
      batch_size: B, rows per training step.
    Returns:
      The TV error (a float), or None without a frequency source.
    Raises:
      ValueError: ``item_ids`` and ``item_counts`` of different lengths, or no rows at all.
    """
    if frequency is None:
        return None
    item_ids, item_counts = np.asarray(item_ids), np.asarray(item_counts)
    if item_ids.shape != item_counts.shape:
        raise ValueError(
            f"item_counts must have one count per item ID: expected shape {item_ids.shape}; received {item_counts.shape}."
        )
    true = batch_frequencies(item_counts.astype(np.float64), batch_size, frequency.estimand)
    remote = any("/job:ps" in (getattr(v, "device", "") or "") for v in frequency.variables)
    read = tf.function(frequency.probability) if remote else frequency.probability
    estimated = read(tf.constant(item_ids)).numpy()
    return total_variation_error(estimated, true, batch_size)

