"""``yt-bias report``: every table and figure the README and docs cite, regenerated into one folder.

One module per section (:data:`SECTIONS`), each with ``run(settings, out_dir) -> SectionResult``
(Markdown tables, PNG figures, a dict of numbers) and ``readme_blocks(entry)`` (the README's blocks
of the section, rendered from its entry in ``report.json`` alone). :func:`run_report` runs the
sections and merges each into ``report.json`` with its command, config, commit, wall time and
machine, so one section can be refreshed alone and the others keep their own stamps.
:mod:`yt_bias.report.readme` fills and checks the README's blocks.

May import: everything below the entry points.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence

from yt_bias.report.base import (
    REPORT_FILE,
    SectionResult,
    Settings,
    _load,
    cpu_seconds,
    git_commit,
    machine,
    read_report,
    shown_scale_results,
    stamp,
    write_report,
)
from yt_bias.report.readme import write_index
from yt_bias.report.registry import SECTIONS, section_module

__all__ = ["REPORT_FILE", "SECTIONS", "SectionResult", "Settings", "merge_report", "run_report", "section_module"]


def run_report(
    out_dir: str,
    settings: Settings | None = None,
    only: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Runs the sections (all, or ``only``) and merges each into ``out_dir/report.json``.

    Without ``only`` the report starts from scratch (every section is run) and the whole run's
    wall time and machine are recorded under ``"full_run"``; with ``only`` the other sections'
    entries are kept as they are. A section that raises is recorded as ``"failed"`` with the
    error, and the others still run.

    Returns:
      The report (the content of ``report.json``).
    """
    settings = settings or Settings()
    say = progress or (lambda message: None)
    names = list(only) if only else list(SECTIONS)
    modules = {name: section_module(name) for name in names}
    os.makedirs(out_dir, exist_ok=True)
    report = read_report(out_dir) if only else {"sections": {}}
    report.setdefault("sections", {})
    began_all, machine_all, cpu_all = time.perf_counter(), machine(), cpu_seconds()
    for name, module in modules.items():
        say(f"[{name}] {module.TITLE} ...")
        began, at_start, cpu_start = time.perf_counter(), machine(), cpu_seconds()
        try:
            result = module.run(settings, out_dir)
        except Exception as error:  # a failed section is reported, and the others still run
            result = SectionResult(status="failed", reason=f"{type(error).__name__}: {error}")
            traceback.print_exc(file=sys.stderr)
        entry = stamp(name, settings, result, began, at_start, out_dir)
        entry["cpu_seconds"] = round(cpu_seconds() - cpu_start, 1)
        report["sections"][name] = entry
        report["sections"] = {n: report["sections"][n] for n in SECTIONS if n in report["sections"]}
        write_report(out_dir, report)
        say(f"[{name}] {entry['status']} in {entry['wall_seconds']:.0f} s" + (f": {entry['reason']}" if entry["reason"] else ""))
    if not only:
        report["full_run"] = {
            "command": f"yt-bias report --out {out_dir}" + (" --quick" if settings.quick else "")
            + (" --movielens ML100K_DIR" if settings.movielens else "")
            + (f" --scale-results {shown_scale_results(settings.scale_results)}" if settings.scale_results else ""),
            "wall_seconds": round(time.perf_counter() - began_all, 1),
            "cpu_seconds": round(cpu_seconds() - cpu_all, 1),
            "commit": git_commit(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": dict(machine_all, load_average_end=_load()),
        }
    write_report(out_dir, report)
    write_index(out_dir, report)
    return report


def merge_report(out_dir: str, other_dir: str, only: Sequence[str] | None = None) -> dict:
    """Copies sections (all, or ``only``) of the report in ``other_dir`` into ``out_dir``, each with its own stamp.

    Their tables and figures are copied along; the other sections of ``out_dir`` are kept. For
    sections run on another machine or in another process.

    Returns:
      The merged report.
    """
    other = read_report(other_dir)
    names = list(only) if only else [n for n in SECTIONS if n in other["sections"]]
    missing = [n for n in names if n not in other["sections"]]
    if missing:
        raise LookupError(f"{os.path.join(other_dir, REPORT_FILE)} has no section {', '.join(missing)}.")
    report = read_report(out_dir)
    report.setdefault("sections", {})
    for name in names:
        entry = other["sections"][name]
        for relative in entry.get("tables", []) + entry.get("figures", []):
            os.makedirs(os.path.dirname(os.path.join(out_dir, relative)) or out_dir, exist_ok=True)
            shutil.copyfile(os.path.join(other_dir, relative), os.path.join(out_dir, relative))
        report["sections"][name] = entry
    report["sections"] = {n: report["sections"][n] for n in SECTIONS if n in report["sections"]}
    write_report(out_dir, report)
    write_index(out_dir, report)
    return report
