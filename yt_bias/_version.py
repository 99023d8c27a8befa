"""The package version, in one place: read by setup.py (without importing the package) and by ``yt_bias.__version__``."""

__version__ = "0.2.0.dev0"
