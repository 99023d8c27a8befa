"""The API reference builds from the docstrings without a warning, broken references are caught,
and every ``Example:`` block in the tf-keras package's docstrings runs as a doctest."""

from __future__ import annotations

import doctest
import importlib
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


# Every public Keras layer shows its use in an ``Example:`` block of its class docstring.
PUBLIC_LAYERS = (
    "yt_bias.core.frequency.source.FrequencySource",
    "yt_bias.core.frequency.streaming.StreamingFrequencyEstimator",
    "yt_bias.core.frequency.oracle.OracleFrequency",
    "yt_bias.core.towers.Tower",
    "yt_bias.core.model.TwoTowerModel",
    "yt_bias.core.cross_batch.CrossBatchMemory",
    "yt_bias.integrations.tfrs.CorrectedRetrieval",
)


def test_example_blocks_run_as_doctests():
    """Every ``>>>`` example of the package's docstrings runs and shows its output; each public layer has one."""
    script = _script()
    sys.path.insert(0, ROOT)
    modules = script.example_modules()
    failures = script.example_failures(modules)
    assert not failures, "\n".join(failures)[-6000:]
    finder = doctest.DocTestFinder()
    for layer in PUBLIC_LAYERS:
        module_name, class_name = layer.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        examples = [t for t in finder.find(cls, layer) if t.name == layer and t.examples]
        assert module_name in modules and "Example:" in cls.__doc__ and examples, f"{layer}: no Example: block with >>> lines"


def test_a_wrong_example_output_is_reported(tmp_path, monkeypatch):
    package = tmp_path / "examplepkg"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent(
            '''
            def double(x):
                """Doubles.

                Example:

                >>> double(2)
                5
                """
                return 2 * x
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (failure,) = _script().example_failures(["examplepkg"])
    assert failure.startswith("examplepkg.double: its Example does not run as shown") and "Expected:\n    5\nGot:\n    4" in failure
