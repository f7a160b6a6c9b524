"""``cimdse report DIR``: plots and report.md (``cimdse.plots``) from a result folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser(
        "report",
        help="plots and report.md from a compile, search or sweep folder",
        description="Detect what DIR holds (sweep.csv; layers.csv + summary.csv; history.csv and/or "
        "best_policy.yaml) and write PNG plots and report.md.",
    )
    rp.add_argument("dir", metavar="DIR")
    rp.add_argument("--out", metavar="DIR", help="where to write the report (default: DIR itself)")
    rp.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from cimdse import plots

    for path in plots.make_report(args.dir, args.out):
        print(path)
    return 0
