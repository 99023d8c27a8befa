"""Packaging: the built metadata carries the ScaNN platform marker, one version source, py.typed ships."""

from __future__ import annotations

import os
import subprocess
import sys

from packaging.markers import Marker
from packaging.requirements import Requirement

import yt_bias

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _egg_info(tmp_path) -> str:
    """Builds the package metadata (``setup.py egg_info``) into tmp_path; returns the .egg-info directory."""
    result = subprocess.run(
        [sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (info,) = [p for p in os.listdir(tmp_path) if p.endswith(".egg-info")]
    return os.path.join(tmp_path, info)


def _requirements(info: str) -> list[Requirement]:
    """requires.txt as PEP 508 requirements (its ``[:marker]`` / ``[extra:marker]`` sections folded in)."""
    requirements, section = [], ""
    with open(os.path.join(info, "requires.txt"), encoding="utf-8") as f:
        for line in f.read().splitlines():
            if line.startswith("["):
                section = line.strip("[]")
            elif line.strip():
                extra, _, marker = section.partition(":")
                clauses = [f"({marker})"] if marker else []
                clauses += [f'extra == "{extra}"'] if extra else []
                requirements.append(Requirement(line + ("; " + " and ".join(clauses) if clauses else "")))
    return requirements


def test_scann_is_required_only_where_it_publishes_wheels(tmp_path):
    info = _egg_info(tmp_path)
    by_name = {r.name: r for r in _requirements(info)}
    scann = by_name["scann"]
    assert str(scann.specifier) == "==1.4.2" and scann.extras == {"tf"} and scann.marker is not None
    for system, machine, wanted in [
        ("linux", "x86_64", True),
        ("linux", "aarch64", True),
        ("darwin", "arm64", False),
        ("darwin", "x86_64", False),
        ("win32", "AMD64", False),
    ]:
        assert scann.marker.evaluate({"sys_platform": system, "platform_machine": machine, "extra": ""}) is wanted
    assert by_name["tensorflow"].marker is None  # everything else installs everywhere
    assert Marker('extra == "test"').evaluate({"extra": "test"}) and "pdoc" in by_name
    with open(os.path.join(info, "PKG-INFO"), encoding="utf-8") as f:
        assert f"Version: {yt_bias.__version__}\n" in f.read()
    with open(os.path.join(info, "SOURCES.txt"), encoding="utf-8") as f:
        assert "yt_bias/py.typed" in f.read().splitlines()


def test_version_has_one_source():
    from yt_bias._version import __version__

    assert yt_bias.__version__ == __version__
    assert Requirement(f"yt-bias=={__version__}").specifier.contains(__version__, prereleases=True)
