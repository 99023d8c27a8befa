"""Packaging for yt-bias: the sampling-bias-corrected two-tower model of Yi et al. (RecSys 2019)."""

from setuptools import find_packages, setup

# The only versions that work together: ScaNN 1.4.2's TF ops are built for TF 2.20, and
# TFRS 0.7.7 needs Keras 2 (tf-keras whose minor version matches TensorFlow's).
INSTALL_REQUIRES = [
    "tensorflow==2.20.*",
    "tf-keras==2.20.*",
    "tensorflow-recommenders==0.7.7",
    "scann[tf]==1.4.2",
    "numpy>=1.26",
    "matplotlib>=3.7",
]

EXTRAS_REQUIRE = {
    "test": ["pytest>=7", "pytest-xdist>=3", "nbformat>=5", "nbclient>=0.9", "ipykernel>=6", "pyarrow>=14"],
    "parquet": ["pyarrow>=14"],
    "notebooks": ["jupyter", "nbformat>=5", "nbclient>=0.9", "ipykernel>=6"],
    "dev": ["ruff>=0.5"],
}

setup(
    name="yt-bias",
    version="0.1.0",
    description="Sampling-bias-corrected two-tower retrieval (Yi et al., RecSys 2019) in TensorFlow/Keras",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["yt_bias", "yt_bias.*"]),
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["yt-bias=yt_bias.cli:main"]},
    classifiers=[
        "License :: OSI Approved :: Apache Software License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
