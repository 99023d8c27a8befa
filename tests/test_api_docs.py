"""The API reference builds from the docstrings without a warning, and broken references are caught."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "build_api_docs.py")


def _script():
    spec = importlib.util.spec_from_file_location("build_api_docs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_docs_build_cleanly(tmp_path):
    out = tmp_path / "api"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert result.returncode == 0 and not warnings, "\n".join(warnings) or result.stderr[-3000:]
    for page in ("index.html", "yt_bias.html", "yt_bias/serving/export.html", "yt_bias/core/negatives.html", "yt_bias/serving/index.html"):
        assert (out / page).is_file(), page
    serving = (out / "yt_bias" / "serving" / "export.html").read_text(encoding="utf-8")
    assert "exclude_item_ids" in serving and "ServingModel" in serving


def test_broken_references_are_reported(tmp_path, monkeypatch):
    package = tmp_path / "docpkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            '''
            """A package: see :class:`Good`, :func:`helper`, :func:`docpkg.Good.run` and :mod:`os.path`."""


            def helper():
                """Calls :func:`nowhere` and :meth:`Good.missing`."""


            class Good:
                """Runs :meth:`run`."""

                def run(self):
                    """Fine."""
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    problems = _script().broken_references(["docpkg"])
    assert problems == [
        "docpkg.helper: the reference `Good.missing` resolves to nothing",
        "docpkg.helper: the reference `nowhere` resolves to nothing",
    ]
