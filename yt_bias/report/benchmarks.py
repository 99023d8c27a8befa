"""The benchmark scripts under ``scripts/``, run as subprocesses (each measures its own processes' time and memory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts")


def script_path(name: str) -> str | None:
    """The path of ``scripts/NAME`` in a source checkout, or None (an installed package has no scripts)."""
    path = os.path.join(SCRIPTS, name)
    return path if os.path.exists(path) else None


def run_script(name: str, arguments: list[str], timeout: float = 1800) -> dict | list:
    """Runs ``python scripts/NAME ARGUMENTS --json TMP``; returns the JSON it wrote.

    Raises:
      RuntimeError: the script failed (the message ends with its last output lines).
    """
    path = script_path(name)
    if path is None:
        raise FileNotFoundError(f"scripts/{name} not found: the report's benchmark sections need a source checkout.")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join(
            p for p in (os.path.dirname(SCRIPTS), os.environ.get("PYTHONPATH")) if p))
        done = subprocess.run([sys.executable, path, *arguments, "--json", out], capture_output=True, text=True,
                              timeout=timeout, env=env)
        if done.returncode != 0 or not os.path.exists(out):
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise RuntimeError(f"scripts/{name} exited with {done.returncode}:\n{tail}")
        with open(out, encoding="utf-8") as f:
            return json.load(f)
