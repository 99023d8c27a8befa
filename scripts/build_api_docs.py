"""Builds the API reference of ``yt_bias`` from its docstrings (pdoc, Google style) into docs/api.

Every warning pdoc raises while it imports or documents a module (a module that fails to
import, a name in ``__all__`` that resolves to nothing, an annotation it cannot parse), every
cross-reference in a docstring (``:class:`X```, ``:func:`X```, ...) that names nothing and every
``>>>`` example of an ``Example:`` block that does not give its shown output is printed and makes
the build fail, so docstrings stay consistent with the code::

    python scripts/build_api_docs.py              # writes docs/api/index.html, yt_bias.html, ...
    python scripts/build_api_docs.py --out /tmp/api
"""

from __future__ import annotations

import argparse
import doctest
import importlib
import io
import os
import pathlib
import pkgutil
import re
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc):`~?\.?([\w.]+)`")


def resolves(path: str) -> bool:
    """True if a dotted path names a module or an attribute chain under one."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                value = getattr(value, name)
        except AttributeError:
            return False
        return True
    return False


def broken_references(module_names: list[str]) -> list[str]:
    """Sphinx-style cross-references (``:class:`X```, ``:func:`X``` ...) in docstrings that resolve to nothing.

    A reference may be absolute (``yt_bias.serving.index.build_index``), relative to its module
    (``build_index``) or to its class (``search``).
    """
    import pdoc.doc

    problems = []
    for name in module_names:
        module = pdoc.doc.Module.from_name(name)
        stack = [module]
        while stack:
            doc = stack.pop()
            if isinstance(doc, (pdoc.doc.Module, pdoc.doc.Class)):
                stack.extend(doc.own_members)
            if isinstance(doc, pdoc.doc.Module):
                stack.extend(doc.submodules)
            home, qualname = doc.taken_from  # where it is defined, also for names re-exported elsewhere
            scopes = [doc.modulename, doc.fullname.rsplit(".", 1)[0], doc.fullname, home]
            scopes += [f"{home}.{qualname.rsplit('.', 1)[0]}", f"{home}.{qualname}"] if qualname else []
            for target in ROLE.findall(doc.docstring or ""):
                if not any(resolves(f"{scope}.{target}") for scope in scopes) and not resolves(target):
                    problems.append(f"{doc.fullname}: the reference `{target}` resolves to nothing")
    return sorted(set(problems))


def example_modules() -> list[str]:
    """The modules of ``yt_bias`` whose docstrings hold ``>>>`` examples.

    ``yt_bias.keras3`` runs under Keras 3, which one process cannot hold beside the tf-keras
    parts: its examples are left to its own tests.
    """
    package = pathlib.Path(ROOT, "yt_bias")
    names = []
    for path in sorted(package.rglob("*.py")):
        if "keras3" not in path.parts and ">>> " in path.read_text(encoding="utf-8"):
            names.append(".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"))
    return names


def example_failures(module_names: list[str]) -> list[str]:
    """Runs the ``>>>`` examples in the docstrings of ``module_names`` (doctest, ``...`` allowed in outputs).

    Returns:
      One message per docstring whose examples fail (the doctest report); empty when all pass.
    """
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures = []
    for name in module_names:
        for test in finder.find(importlib.import_module(name), name):
            out = io.StringIO()
            if test.examples and runner.run(test, out=out.write).failed:
                failures.append(f"{test.name}: its Example does not run as shown:\n{out.getvalue()}")
    return failures


def build(out: str) -> list[str]:
    """Renders the HTML reference into ``out``; returns the warnings (empty on a clean build)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, ROOT)
    import pdoc
    import pdoc.render

    import yt_bias

    for name in yt_bias.__all__:  # names the package loads lazily are documented like the others
        setattr(yt_bias, name, getattr(yt_bias, name))
    pdoc.render.configure(docformat="google", footer_text=f"yt-bias {yt_bias.__version__}")
    # The package's modules by name: pdoc alone stops at the package's __all__, which lists none
    # (it walks the subpackages' modules itself). Private ones (``_keras``, ``__main__``) are left out.
    children = (m.name for m in pkgutil.iter_modules(yt_bias.__path__, "yt_bias."))
    modules = ["yt_bias"] + sorted(name for name in children if not name.rsplit(".", 1)[1].startswith("_"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pdoc.pdoc(*modules, output_directory=pathlib.Path(out))
    problems = [
        f"{os.path.relpath(w.filename, ROOT) if w.filename.startswith(ROOT) else w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if "pdoc" in w.filename
    ]
    return problems + broken_references(modules) + example_failures(example_modules())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "api"), help="output directory (default: docs/api)")
    args = parser.parse_args(argv)
    problems = build(args.out)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if problems:
        print(f"API docs: {len(problems)} warning(s); fix the docstrings above.", file=sys.stderr)
        return 1
    print(f"API docs written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
