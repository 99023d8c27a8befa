"""What every report section shares: its settings, its result, the machine stamp, the report file.

A section is a module of :mod:`yt_bias.report` with ``NAME``, ``TITLE``, ``run(settings, out_dir)
-> SectionResult`` and ``readme_block(entry) -> str``. ``run`` writes its Markdown tables
(``NAME.md``) and figures (``figures/*.png``) into ``out_dir`` and returns the numbers; the
report file ``report.json`` holds one entry per section (numbers, command, config, wall time,
machine, commit), and ``readme_block`` renders the README's block of the section from that entry
alone, so the README can be checked against the JSON without running anything.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import subprocess
import time
from typing import Any

REPORT_FILE = "report.json"
MOVIELENS_SECTIONS = ("movielens", "tfrs_drop_in", "keras3")
# Sections recorded as skipped when their input is not given: name -> the option that gives it.
INPUT_SECTIONS = {"movielens": "--movielens", "tfrs_drop_in": "--movielens", "scale": "--scale-results", "scale_study": "--scale-results"}
FIGURES = "figures"


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the command line decides for every section.

    Attributes:
      quick: tiny settings (a smoke run: seconds per section, numbers meaningless).
      movielens: a MovieLens-100K directory (``u.data`` or RecBole atomic files); sections that
        need it are skipped without it.
      scale_results: the output folder of ``scripts/bench_scale.py`` (its ``phase_*.json``); the
        ``scale`` section is skipped without it.
    """

    quick: bool = False
    movielens: str | None = None
    scale_results: str | None = None


@dataclasses.dataclass
class SectionResult:
    """What one section produced.

    Attributes:
      numbers: every number the section reports (name -> value; JSON-serialisable).
      tables: file names of its Markdown tables (relative to the report folder).
      figures: file names of its figures (relative to the report folder).
      config: the settings it ran with (JSON-serialisable).
      summary: one line saying what was run (seeds, epochs, sizes), for the README block.
      status: ``"ok"`` or ``"skipped"``.
      reason: why it was skipped.
    """

    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)
    tables: list[str] = dataclasses.field(default_factory=list)
    figures: list[str] = dataclasses.field(default_factory=list)
    config: dict[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""
    status: str = "ok"
    reason: str = ""


def skipped(reason: str) -> SectionResult:
    return SectionResult(status="skipped", reason=reason)


def seeds_note(seeds) -> str:
    """``"seeds 0, 1, 2 (mean ± sample sd)"``: the seeds a section's numbers are the mean and sd over."""
    return f"seeds {', '.join(map(str, seeds))} (mean ± sample sd)"


def not_in_report(name: str, entry: dict) -> dict[str, str] | None:
    """The README block of section ``name`` when its entry did not run (why not); None when it did."""
    if entry.get("status") == "ok":
        return None
    return {name: f"(not in this report: {entry.get('reason', entry.get('status'))})"}


def git_commit(root: str | None = None) -> str | None:
    """The commit of the working tree (with ``+dirty`` when it has changes), or None outside git."""
    root = root or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "yt_bias", "scripts"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """CPU count and model, RAM, Python and TensorFlow versions, load average now."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    ram = None
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            ram = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    try:
        import tensorflow as tf

        tf_version = tf.__version__
    except ImportError:  # pragma: no cover
        tf_version = None
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "ram_gb": None if ram is None else round(ram / 2**30, 1),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "tensorflow": tf_version,
        "load_average": _load(),
    }


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (load-independent cost)."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _load() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


def command_for(name: str, settings: Settings, out_dir: str = "OUT") -> str:
    """The exact command that (re)produces one section."""
    parts = ["yt-bias report --out", out_dir, "--only", name]
    if settings.quick:
        parts.append("--quick")
    if settings.movielens and name in MOVIELENS_SECTIONS:
        parts += ["--movielens", "ML100K_DIR"]
    if settings.scale_results and name in ("scale", "scale_study"):
        parts += ["--scale-results", shown_scale_results(settings.scale_results)]
    return " ".join(parts)


def shown_scale_results(path: str) -> str:
    """``--scale-results`` as a command shows it: a folder given relative to the checkout (the
    committed results, ``docs/scale_study``) as it is; any other as ``BENCH_SCALE_DIR``."""
    relative = not os.path.isabs(path) and not os.path.normpath(path).startswith("..")
    return os.path.normpath(path) if relative else "BENCH_SCALE_DIR"


def read_report(out_dir: str) -> dict[str, Any]:
    """The report in ``out_dir`` (an empty one when it has no ``report.json``).

    Raises:
      ValueError: ``report.json`` is damaged (not JSON, or not a report); the message names it.
    """
    path = os.path.join(out_dir, REPORT_FILE)
    if not os.path.exists(path):
        return {"sections": {}}
    try:
        with open(path, encoding="utf-8") as f:
            report = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is damaged ({error}); restore it (e.g. from git) or rerun yt-bias report.") from None
    if not isinstance(report, dict) or not isinstance(report.get("sections", {}), dict):
        raise ValueError(f"{path} is not a yt-bias report (expected an object with 'sections'); restore it or rerun.")
    report.setdefault("sections", {})
    return report


def write_report(out_dir: str, report: dict[str, Any]) -> None:
    """Writes ``report.json`` atomically (temporary file, then rename)."""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise ValueError(f"--out {out_dir!r} is a file; expected the report folder (a directory).")
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, REPORT_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(_clean(report), f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)


def _clean(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN / inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def stamp(
    name: str, settings: Settings, result: SectionResult, began: float, machine_at_start: dict, out_dir: str = "OUT"
) -> dict[str, Any]:
    """The report entry of one section: its result plus command, commit, wall time and machine."""
    entry = dataclasses.asdict(result)
    entry.update(
        command=command_for(name, settings, out_dir),
        quick=settings.quick,
        commit=git_commit(),
        finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        wall_seconds=round(time.perf_counter() - began, 1),
        machine=dict(machine_at_start, load_average_end=_load()),
    )
    return entry


def mean_sd(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    values = [float(v) for v in values]
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: fixed decimals, ``-`` for None."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def fmt_pm(numbers: dict, key: str, digits: int = 4) -> str:
    """``mean ± sd`` from ``numbers[key + "/mean"]`` and ``/sd`` (just the mean when there is no sd)."""
    mean = numbers.get(f"{key}/mean")
    sd = numbers.get(f"{key}/sd")
    if mean is None:
        return "-"
    if sd is None or numbers.get(f"{key}/n", 2) < 2:
        return fmt(mean, digits)
    return f"{fmt(mean, digits)} ± {fmt(sd, digits)}"


def put_stats(numbers: dict, key: str, values) -> None:
    """Stores ``key/mean``, ``key/sd`` and ``key/n`` of ``values`` (nothing when it is empty)."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return
    mean, sd = mean_sd(values)
    numbers[f"{key}/mean"], numbers[f"{key}/sd"], numbers[f"{key}/n"] = mean, sd, len(values)


def provenance(entry: dict) -> str:
    """The line under a README block: command, what ran, wall time, machine, commit."""
    m = entry.get("machine", {})
    load = m.get("load_average") or [None]
    load_end = m.get("load_average_end") or [None]
    wall = entry.get("wall_seconds", 0.0)
    wall_text = f"{wall / 60:.1f} min" if wall >= 120 else f"{wall:.0f} s"
    parts = [f"`{entry.get('command', '')}`"]
    if entry.get("summary"):
        parts.append(entry["summary"])
    machine_text = f"{m.get('cpus')} CPUs ({m.get('cpu_model')}), TF {m.get('tensorflow')}"
    if load[0] is not None:
        machine_text += f", load {load[0]:.1f} at start / {load_end[0]:.1f} at end"
    cpu = entry.get("cpu_seconds")
    parts.append(f"{wall_text} wall" + (f" ({cpu / 60:.1f} min of CPU)" if cpu else "") + f" on {machine_text}")
    if entry.get("commit"):
        parts.append(f"commit {entry['commit'][:12]}")
    if entry.get("quick"):
        parts.append("**quick (smoke) settings: these numbers mean nothing**")
    return "; ".join(parts) + "."


def write_table(out_dir: str, name: str, text: str) -> str:
    """Writes ``name.md`` into ``out_dir``; returns its file name."""
    file_name = f"{name}.md"
    with open(os.path.join(out_dir, file_name), "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")
    return file_name


def save_png(out_dir: str, name: str, figure) -> str:
    """Writes ``figures/name.png``; returns its path relative to ``out_dir``."""
    from yt_bias.studies.plots import save_figure

    os.makedirs(os.path.join(out_dir, FIGURES), exist_ok=True)
    relative = f"{FIGURES}/{name}.png"
    save_figure(figure, os.path.join(out_dir, relative))
    return relative
