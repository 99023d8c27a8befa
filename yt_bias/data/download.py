"""``yt-bias data download NAME``: fetch a public data set from its official URL into a cache.

Each archive is downloaded, checked against an MD5 (GroupLens publishes ``<archive>.md5`` next to
every MovieLens zip; that file is fetched and compared) and unzipped into ``CACHE/NAME/``. MIND
publishes no checksum: its SHA-256 is computed and written to ``CACHE/NAME/checksums.json`` so
a later copy can be compared, and the download says that it was not verified.

Offline, the first connection fails at once with a :class:`DownloadError` naming the URL and the
directory to unzip the archive into by hand.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import urllib.error
import urllib.request
import zipfile

GROUPLENS = "https://files.grouplens.org/datasets/movielens/"
MIND = "https://mind201910small.blob.core.windows.net/release/"


class DownloadError(RuntimeError):
    """A download that could not complete (no network, HTTP error, checksum mismatch)."""


@dataclasses.dataclass(frozen=True)
class Archive:
    """One zip file of a data set: where it is, how to check it, where it unpacks."""

    url: str
    md5: str | None = None  # known MD5 (None: take it from md5_url, or none is published)
    md5_url: str | None = None  # a published ``<archive>.md5`` file
    subdir: str = ""  # unzip into CACHE/NAME/subdir


@dataclasses.dataclass(frozen=True)
class DataSource:
    """A downloadable data set: its archives, the loader source and the directory to pass as data.path."""

    archives: tuple[Archive, ...]
    source: str
    data_dir: str  # relative to CACHE/NAME
    expect: str  # a file that must exist under data_dir after unzipping


def _grouplens(stem: str, expect: str) -> DataSource:
    url = GROUPLENS + f"{stem}.zip"
    return DataSource((Archive(url, md5_url=url + ".md5"),), "movielens", stem, expect)


def _mind(size: str) -> DataSource:
    parts = tuple(Archive(MIND + f"MIND{size}_{part}.zip", subdir=f"MIND{size}_{part}") for part in ("train", "dev"))
    return DataSource(parts, "mind", "", f"MIND{size}_train/behaviors.tsv")


DATASETS: dict[str, DataSource] = {
    "ml-100k": _grouplens("ml-100k", "u.data"),
    "ml-1m": _grouplens("ml-1m", "ratings.dat"),
    "ml-20m": _grouplens("ml-20m", "ratings.csv"),
    "ml-25m": _grouplens("ml-25m", "ratings.csv"),
    "ml-latest-small": _grouplens("ml-latest-small", "ratings.csv"),
    "ml-latest": _grouplens("ml-latest", "ratings.csv"),
    "mind-small": _mind("small"),
    "mind-large": _mind("large"),
}


def default_cache_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".cache", "yt_bias")


# A server that sends less than this many bytes in ``timeout`` seconds is stalled (a trickle is a timeout too).
MIN_BYTES_PER_TIMEOUT = 1024


def _copy(response, out, timeout: float, url: str) -> None:
    """Copies ``response`` to ``out``; TimeoutError when a ``timeout`` window brings < MIN_BYTES_PER_TIMEOUT bytes."""
    read = getattr(response, "read1", response.read)
    window_start, window_bytes = time.monotonic(), 0
    while True:
        chunk = read(1 << 20)
        if not chunk:
            return
        out.write(chunk)
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= timeout:
            if window_bytes < MIN_BYTES_PER_TIMEOUT:
                raise TimeoutError(f"the server sent {window_bytes} bytes in {now - window_start:.0f} s (stalled; --timeout {timeout:g})")
            window_start, window_bytes = now, 0


def _fetch(url: str, target: str, timeout: float, manual_dir: str) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target + ".part", "wb") as out:
            _copy(response, out, timeout, url)
    except (TimeoutError, urllib.error.URLError, OSError) as error:
        if os.path.exists(target + ".part"):
            os.remove(target + ".part")
        raise DownloadError(
            f"Cannot download {url} ({getattr(error, 'reason', error)}). Without network access, download it "
            f"elsewhere and unzip it into {manual_dir} by hand, then pass that directory as --data."
        ) from None
    os.replace(target + ".part", target)


def file_digest(path: str, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _published_md5(archive: Archive, timeout: float, manual_dir: str, scratch: str) -> str | None:
    if archive.md5:
        return archive.md5.lower()
    if not archive.md5_url:
        return None
    path = os.path.join(scratch, os.path.basename(archive.md5_url))
    _fetch(archive.md5_url, path, timeout, manual_dir)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read().split()
    candidates = [t.lower() for t in text if len(t) == 32 and all(c in "0123456789abcdefABCDEF" for c in t)]
    if not candidates:
        raise DownloadError(f"{archive.md5_url} holds no MD5 digest; received {' '.join(text)[:80]!r}.")
    return candidates[0]


def download(name: str, cache_dir: str | None = None, base_url: str | None = None, timeout: float = 15.0, log=print) -> str:
    """Downloads, verifies and unzips data set ``name``; returns the directory to use as ``data.path``.

    Args:
      name: one of :data:`DATASETS`.
      cache_dir: where data sets live (default ``~/.cache/yt_bias``); the data goes to ``cache_dir/name``.
      base_url: replaces the host part of every URL (a mirror; tests use an unreachable one).
    A data set is ready (and not downloaded again) only when its last step, writing
    ``checksums.json``, completed: a half-extracted cache is extracted again.

    Raises:
      ValueError: unknown name, or a cache directory that is a file. DownloadError: no network, an
        HTTP error, a stalled server, a checksum mismatch or an archive that is not a zip file.
    """
    if name not in DATASETS:
        raise ValueError(f"data set must be one of {sorted(DATASETS)}; received {name!r}.")
    if timeout is None or not 0 < timeout < float("inf"):
        raise ValueError(f"--timeout must be a finite number of seconds > 0; received {timeout!r}.")
    spec = DATASETS[name]
    cache_dir = cache_dir or default_cache_dir()
    if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
        raise ValueError(f"--cache-dir {cache_dir!r} is a file; expected a directory.")
    root = os.path.join(cache_dir, name)
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"--cache-dir: {root!r} is a file; expected a directory for the data set.")
    data_dir = os.path.join(root, spec.data_dir) if spec.data_dir else root
    marker = os.path.join(root, "checksums.json")
    if os.path.isfile(os.path.join(data_dir, spec.expect)) and os.path.isfile(marker):
        log(f"{name}: already in {data_dir}")
        return data_dir
    os.makedirs(root, exist_ok=True)
    if os.path.exists(marker):
        os.remove(marker)
    record = {}
    for archive in spec.archives:
        url = archive.url
        if base_url:
            url = base_url.rstrip("/") + "/" + os.path.basename(url)
            archive = dataclasses.replace(archive, url=url, md5_url=url + ".md5" if archive.md5_url else None)
        zip_path = os.path.join(root, os.path.basename(url))
        manual = os.path.join(root, archive.subdir) if archive.subdir else root
        log(f"{name}: downloading {url}")
        _fetch(url, zip_path, timeout, manual)
        expected = _published_md5(archive, timeout, manual, root)
        actual = file_digest(zip_path, "md5")
        if expected is not None and actual != expected:
            os.remove(zip_path)
            raise DownloadError(f"{zip_path}: MD5 {actual} does not match the published {expected} ({url}); deleted.")
        record[os.path.basename(url)] = {
            "md5": actual,
            "sha256": file_digest(zip_path, "sha256"),
            "verified": expected is not None,
        }
        log(
            f"{name}: {os.path.basename(url)} MD5 {actual} "
            + ("verified" if expected else "(no checksum is published: NOT verified; recorded in checksums.json)")
        )
        try:
            with zipfile.ZipFile(zip_path) as archive_file:
                archive_file.extractall(manual)
        except (zipfile.BadZipFile, EOFError, OSError) as error:
            os.remove(zip_path)
            raise DownloadError(f"{zip_path}: not a readable zip archive ({error}) although its checksum matched ({url}); deleted.") from None
    if not os.path.isfile(os.path.join(data_dir, spec.expect)):
        raise DownloadError(f"{name}: after unzipping, {os.path.join(data_dir, spec.expect)} is missing.")
    tmp = marker + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=2)
    os.replace(tmp, marker)  # last: marks the cache complete
    return data_dir
