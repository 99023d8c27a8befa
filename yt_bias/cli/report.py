"""``yt-bias report``: every table and figure the README and docs cite, regenerated into one folder.

Examples::

    yt-bias report --out docs/report --movielens ML100K_DIR          # everything (about half an hour on 2 cores)
    yt-bias report --out runs/report --quick                          # smoke sizes (a minute or two; numbers mean nothing)
    yt-bias report --out docs/report --only main --only serving       # refresh two sections, keep the others
    yt-bias report --out docs/report --render-only --readme README.md  # rewrite the README's blocks from report.json
    yt-bias report --out docs/report --merge runs/other --only serving # take a section run elsewhere, with its stamp
"""

from __future__ import annotations

import argparse
import os
import time


def register(subparsers) -> None:
    from yt_bias.report.registry import SECTIONS

    parser = subparsers.add_parser(
        "report",
        help="regenerate every table and figure of the README and docs into one folder (report.json, *.md, figures/)",
        description="Runs the report's sections (" + ", ".join(SECTIONS) + ") and writes each one's Markdown tables, "
        "PNG figures and numbers (with command, config, commit, wall time and machine) into --out; --only merges "
        "the sections it runs into the existing report.json.",
    )
    parser.add_argument("--out", default="docs/report", help="the report folder (report.json, index.md, *.md, figures/)")
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke run whose numbers mean nothing")
    parser.add_argument("--only", action="append", default=[], choices=list(SECTIONS), metavar="NAME",
                        help="run only this section (repeatable) and merge it into the existing report")
    parser.add_argument("--movielens", default=None, metavar="DIR",
                        help="a MovieLens-100K directory (u.data or RecBole atomic files); without it the sections "
                        "that need it are recorded as skipped")
    parser.add_argument("--scale-results", default=None, metavar="DIR",
                        help="the output folder of scripts/bench_scale.py (its phase_*.json); without it the scale "
                        "section is recorded as skipped")
    parser.add_argument("--readme", default=None, metavar="PATH", help="afterwards, rewrite the generated blocks of this README")
    parser.add_argument("--render-only", action="store_true", help="run nothing: rewrite index.md (and --readme) from report.json")
    parser.add_argument("--merge", default=None, metavar="DIR",
                        help="run nothing: copy the sections (all, or --only) of the report in DIR into --out, with their stamps")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from yt_bias.report import Settings, merge_report, run_report
    from yt_bias.report.base import read_report
    from yt_bias.report.readme import check, update_readme, write_index

    if args.movielens and not os.path.isdir(args.movielens):
        raise FileNotFoundError(f"--movielens {args.movielens}: no such directory.")
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; expected the report folder (a directory).")
    start = time.perf_counter()
    if args.merge:
        if not os.path.isfile(os.path.join(args.merge, "report.json")):
            what = "a directory without report.json" if os.path.isdir(args.merge) else "not a directory"
            raise FileNotFoundError(f"--merge {args.merge!r} is {what}; expected the --out folder of another yt-bias report run.")
        report = merge_report(args.out, args.merge, args.only or None)
    elif args.render_only:
        report = read_report(args.out)
        if not report.get("sections"):
            raise FileNotFoundError(f"{os.path.join(args.out, 'report.json')}: no report to render; run `yt-bias report` first.")
        write_index(args.out, report)
    else:
        if args.scale_results and not os.path.isdir(args.scale_results):
            raise FileNotFoundError(f"--scale-results {args.scale_results}: no such directory.")
        settings = Settings(quick=args.quick, movielens=args.movielens, scale_results=args.scale_results)
        report = run_report(args.out, settings, args.only or None, progress=lambda m: print(m, flush=True))
    failed = [n for n, e in report["sections"].items() if e["status"] == "failed"]
    # Render from the file, as the suite's check does (JSON turns tuples into lists, NaN into null).
    report = read_report(args.out)
    if args.readme:
        changed = update_readme(args.readme, report)
        with open(args.readme, encoding="utf-8") as f:
            problems = check(f.read(), report)
        print(f"{args.readme}: {'blocks rewritten' if changed else 'blocks already current'}"
              + (f"; {len(problems)} problem(s):\n  " + "\n  ".join(problems) if problems else ""))
    print(f"Report in {args.out} (index.md, report.json) after {time.perf_counter() - start:.0f} s"
          + (f"; failed sections: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
