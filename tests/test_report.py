"""``yt-bias report``: the README's numbers come from the committed report, and the command runs.

* The README's generated blocks equal their rendering from docs/report/report.json, every block
  the README holds is one the report produces, and the README's results sections hold no decimal
  number outside a block.
* ``yt-bias report --quick`` writes every section's table, figure and numbers with its command
  and stamp; ``--only`` re-runs one section and keeps the others' entries.
"""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from yt_bias.report import readme
from yt_bias.report.base import read_report
from yt_bias.report.registry import SECTIONS

ROOT = pathlib.Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "docs" / "report"
README = ROOT / "README.md"
MOVIELENS_SECTIONS = ("movielens", "tfrs_drop_in")
INPUT_SECTIONS = {"movielens": "--movielens", "tfrs_drop_in": "--movielens", "scale": "--scale-results",
                  "scale_study": "--scale-results"}


def committed_report() -> dict:
    return read_report(str(REPORT_DIR))


def test_committed_report_has_every_section_with_its_stamp():
    report = committed_report()
    assert set(report["sections"]) == set(SECTIONS), "docs/report/report.json lacks sections: run `yt-bias report`"
    for name, entry in report["sections"].items():
        assert entry["command"].startswith("yt-bias report --out") and f"--only {name}" in entry["command"]
        for key in ("wall_seconds", "machine", "commit", "config", "numbers", "status"):
            assert key in entry, (name, key)
        if name in INPUT_SECTIONS and entry["status"] == "skipped":
            continue
        assert entry["status"] == "ok", (name, entry.get("reason"))
        assert entry["numbers"], name
        for relative in entry["tables"] + entry["figures"]:
            assert (REPORT_DIR / relative).is_file(), (name, relative)


def test_readme_blocks_equal_their_rendering_from_the_report():
    report = committed_report()
    text = README.read_text(encoding="utf-8")
    problems = readme.check(text, report)
    assert not problems, "README.md disagrees with docs/report/report.json (fix with `yt-bias report --out docs/report " \
        "--render-only --readme README.md`):\n" + "\n".join(problems)
    found = {m.group("id") for m in readme.BLOCK.finditer(text)}
    assert {"main", "sweep", "estimand", "frequency", "full_run"} <= found


def test_readme_shows_at_least_two_report_figures():
    text = README.read_text(encoding="utf-8")
    figures = [line for line in text.splitlines() if line.startswith("![") and "docs/report/figures/" in line]
    assert len(figures) >= 2
    for line in figures:
        path = line[line.index("(") + 1 : line.rindex(")")]
        assert (ROOT / path).is_file(), path


def test_check_finds_a_changed_number_and_a_stray_number():
    report = committed_report()
    text = readme.render(README.read_text(encoding="utf-8"), report)
    assert readme.check(text, report) == []
    body = readme.blocks(report)["main"]
    digit = next(c for c in body if c.isdigit())
    changed = text.replace(body, body.replace(digit, "9" if digit != "9" else "8", 1))
    assert any("main" in p for p in readme.check(changed, report))
    stray = text.replace("## More results\n", "## More results\nThe gain is 0.123 here.\n", 1)
    assert any("0.123" in p for p in readme.check(stray, report))
    unknown = text + "\n<!-- report:nonexistent -->\nx\n<!-- /report:nonexistent -->\n"
    assert any("nonexistent" in p for p in readme.check(unknown, report))


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """One ``yt-bias report --quick`` of every section that needs no data download."""
    from yt_bias.cli import main

    out = tmp_path_factory.mktemp("report")
    code = main(["report", "--out", str(out), "--quick"])
    return out, code


def test_quick_report_writes_every_section(quick_report):
    out, code = quick_report
    assert code == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert list(report["sections"]) == list(SECTIONS)
    assert report["full_run"]["wall_seconds"] > 0
    for name, entry in report["sections"].items():
        assert entry["quick"] is True
        assert entry["command"] == f"yt-bias report --out {out} --only {name} --quick"
        assert entry["machine"]["cpus"] and entry["machine"]["tensorflow"]
        if name in INPUT_SECTIONS:
            assert entry["status"] == "skipped" and INPUT_SECTIONS[name] in entry["reason"]
            continue
        assert entry["status"] == "ok", (name, entry["reason"])
        assert entry["numbers"] and entry["tables"]
        numeric = [v for v in entry["numbers"].values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        assert numeric, name
        for relative in entry["tables"]:
            assert (out / relative).read_text(encoding="utf-8").strip(), (name, relative)
        for relative in entry["figures"]:
            assert (out / relative).stat().st_size > 1000 and relative.endswith(".png"), (name, relative)
        assert readme.blocks(report)  # every section renders from its entry alone
    with_figures = {n for n, e in report["sections"].items() if e["figures"]}
    assert {"main", "estimand", "frequency", "drift", "train_step", "serving"} <= with_figures
    assert (out / "index.md").is_file()


def test_only_merges_one_section_and_keeps_the_others(quick_report):
    from yt_bias.cli import main

    out, _ = quick_report
    before = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert main(["report", "--out", str(out), "--quick", "--only", "drift"]) == 0
    after = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert list(after["sections"]) == list(before["sections"])
    for name in SECTIONS:
        if name != "drift":
            assert after["sections"][name] == before["sections"][name], name
    assert after["sections"]["drift"]["finished"] >= before["sections"]["drift"]["finished"]
    assert after["full_run"] == before["full_run"]


def test_render_only_rewrites_a_readme_from_the_report(quick_report, tmp_path):
    from yt_bias.cli import main

    out, _ = quick_report
    page = tmp_path / "README.md"
    page.write_text("# x\n\n## Results in brief\n\n<!-- report:main -->\nold\n<!-- /report:main -->\n", encoding="utf-8")
    assert main(["report", "--out", str(out), "--render-only", "--readme", str(page)]) == 0
    report = read_report(str(out))
    assert readme.check(page.read_text(encoding="utf-8"), report) == []
    assert "old" not in page.read_text(encoding="utf-8")


def test_unknown_section_and_missing_movielens_are_user_errors(tmp_path, capsys):
    from yt_bias.cli import main

    with pytest.raises(SystemExit):
        main(["report", "--out", str(tmp_path), "--only", "nope"])
    assert main(["report", "--out", str(tmp_path), "--movielens", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "report.json")


def test_merge_copies_sections_with_their_stamps_and_files(quick_report, tmp_path):
    from yt_bias.cli import main

    out, _ = quick_report
    target = tmp_path / "merged"
    assert main(["report", "--out", str(target), "--merge", str(out), "--only", "frequency", "--only", "main"]) == 0
    merged, source = read_report(str(target)), read_report(str(out))
    assert list(merged["sections"]) == ["main", "frequency"]
    assert merged["sections"]["frequency"] == source["sections"]["frequency"]
    for relative in merged["sections"]["frequency"]["tables"] + merged["sections"]["frequency"]["figures"]:
        assert (target / relative).is_file()
    assert main(["report", "--out", str(target), "--merge", str(tmp_path / "none"), "--only", "drift"]) == 2
