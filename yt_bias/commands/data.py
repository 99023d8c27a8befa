"""``yt-bias data download NAME``: fetch a public data set (MovieLens, MIND) into the cache, checksum-verified."""

from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    from yt_bias.data.download import DATASETS

    parser = subparsers.add_parser("data", help="download public data sets (MovieLens, MIND)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    download = actions.add_parser("download", help="download NAME from its official URL, verify it and unzip it")
    download.add_argument("name", choices=sorted(DATASETS), help="the data set")
    download.add_argument("--cache-dir", default=None, help="where data sets go (default ~/.cache/yt_bias)")
    download.add_argument("--base-url", default=None, help="a mirror that replaces the official host")
    download.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the server")
    download.set_defaults(func=run_download)


def run_download(args: argparse.Namespace) -> int:
    from yt_bias.data.download import DATASETS, DownloadError, download

    try:
        path = download(args.name, args.cache_dir, args.base_url, args.timeout, log=lambda m: print(m, flush=True))
    except DownloadError as error:
        print(f"yt-bias data download: error: {error}", file=sys.stderr)
        return 1
    print(f"Ready: --data {path} (data.source={DATASETS[args.name].source})")
    return 0
