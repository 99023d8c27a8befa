"""Packaging for yt-bias: the sampling-bias-corrected two-tower model of Yi et al. (RecSys 2019)."""

import re

from setuptools import find_packages, setup

# One version source, read without importing the package (importing it imports TensorFlow).
with open("yt_bias/_version.py", encoding="utf-8") as f:
    VERSION = re.search(r'^__version__ = "([^"]+)"', f.read(), re.M).group(1)

# ScaNN 1.4.2 publishes wheels for Linux x86-64 and aarch64 only (CPython 3.10-3.13); elsewhere
# the package installs without it and exports default to the exact brute-force index.
SCANN_PLATFORMS = 'sys_platform == "linux" and (platform_machine == "x86_64" or platform_machine == "aarch64")'

# The only versions that work together: ScaNN 1.4.2's TF ops are built for TF 2.20, and
# TFRS 0.7.7 needs Keras 2 (tf-keras whose minor version matches TensorFlow's).
INSTALL_REQUIRES = [
    "tensorflow==2.20.*",
    "tf-keras==2.20.*",
    "tensorflow-recommenders==0.7.7",
    f"scann[tf]==1.4.2; {SCANN_PLATFORMS}",
    "numpy>=1.26",
    "matplotlib>=3.7",
]

# yt_bias.keras3: Keras 3 with the JAX backend (TensorFlow's Keras 3 backend needs nothing more), and
# keras-rs for the retrieval layers the examples use. The tests run on both backends, so "test" has them too.
KERAS3_REQUIRES = ["keras>=3.10", "keras-rs==0.4.*", "jax[cpu]>=0.5"]

EXTRAS_REQUIRE = {
    "test": ["pytest>=7", "pytest-xdist>=3", "nbformat>=5", "nbclient>=0.9", "ipykernel>=6", "pyarrow>=14", "pdoc>=14", "packaging>=23",
             *KERAS3_REQUIRES],
    "keras3": KERAS3_REQUIRES,
    "parquet": ["pyarrow>=14"],
    "notebooks": ["jupyter", "nbformat>=5", "nbclient>=0.9", "ipykernel>=6"],
    "dev": ["ruff>=0.5", "pdoc>=14"],
}

setup(
    name="yt-bias",
    version=VERSION,
    description="Sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019) in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["yt_bias", "yt_bias.*"]),
    package_data={"yt_bias": ["py.typed"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["yt-bias=yt_bias.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
