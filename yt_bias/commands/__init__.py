"""One module per ``yt-bias`` subcommand; each exposes ``register(subparsers)``."""
