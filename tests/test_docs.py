"""The repository stands alone: its code, docs, scripts and notebooks cite no outside notes or tracker numbers.

Forbidden: references to the background notes (PAPER.md, ARCHITECTURE.md, STYLE.md, ../shared),
this project's tracker numbers ("issue 5", "#12", "item 4b") and descriptions of superseded runs
("a few commits earlier", "First run (...)", "final code"). External references name their
project, e.g. ``tensorflow/recommenders#232``, and are fine.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

RULES = {
    "background notes": re.compile(r"\b(PAPER|ARCHITECTURE|STYLE)\.md\b|\.\./shared\b|/work/shared\b"),
    "tracker numbers": re.compile(r"(?<![\w/])issues? #?\d+|(?<![\w/.&-])#\d{1,5}(?!\w)|\bitem \d+[a-z]\b", re.IGNORECASE),
    "superseded runs": re.compile(r"\bcommits? (earlier|before|ago)\b|\bfirst run \(|\bfinal[- ]code\b", re.IGNORECASE),
}

# (file, rule) -> why it stays for now; the last test fails once the file no longer needs it.
KNOWN_EXCEPTIONS = {
}


def checked_files() -> list[pathlib.Path]:
    files = [ROOT / "README.md"]
    files += sorted((ROOT / "yt_bias").rglob("*.py"))
    files += sorted((ROOT / "docs").rglob("*.md"))
    files += sorted((ROOT / "scripts").rglob("*.py"))
    files += sorted((ROOT / "notebooks").glob("*.ipynb"))
    return [f for f in files if f.is_file()]


def violations(text: str) -> list[tuple[str, int, str]]:
    """(rule, line number, line) for every forbidden reference in ``text``."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for rule, pattern in RULES.items():
            if pattern.search(line):
                found.append((rule, number, line.strip()))
    return found


def test_no_outside_notes_tracker_numbers_or_superseded_runs():
    report = []
    for path in checked_files():
        relative = path.relative_to(ROOT).as_posix()
        for rule, number, line in violations(path.read_text(encoding="utf-8")):
            if (relative, rule) not in KNOWN_EXCEPTIONS:
                report.append(f"{relative}:{number}: {rule}: {line[:120]}")
    assert not report, "references the repository must not contain:\n" + "\n".join(report)


@pytest.mark.parametrize(
    "text",
    [
        "see PAPER.md section 2",
        "as in ../shared/ARCHITECTURE.md",
        "with the metrics of issue 5.",
        "(issue 3, item 4b)",
        "fixed in #123",
        "Scale (item 4b)",
        "### First run (a few commits earlier)",
        "measured on the final code",
    ],
)
def test_the_rules_catch_each_kind(text):
    assert violations(text)


@pytest.mark.parametrize(
    "text",
    [
        "TFRS never gathers them (tensorflow/recommenders#232).",
        "colour #1f77b4 and # comments",
        "the issue with duplicates in a batch",
        "an item with c rows adds c columns",
        "the first run's estimator step",
        "the paper (Yi et al., RecSys 2019)",
    ],
)
def test_the_rules_let_ordinary_text_pass(text):
    assert not violations(text)


def test_known_exceptions_are_still_needed():
    stale = [
        (name, rule)
        for name, rule in KNOWN_EXCEPTIONS
        if not any(r == rule for r, _, _ in violations((ROOT / name).read_text(encoding="utf-8")))
    ]
    assert not stale, f"remove these KNOWN_EXCEPTIONS of tests/test_docs.py, they no longer occur: {stale}"
