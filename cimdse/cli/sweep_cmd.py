"""``cimdse sweep CONFIG --out DIR``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from cimdse.errors import CimdseError


def register(sub: argparse._SubParsersAction) -> None:
    sp = sub.add_parser(
        "sweep",
        help="evaluate a grid of models x archs x arch keys x bits/policies; resumable",
        description="Evaluate every point of a sweep config and append one row per point to DIR/sweep.csv. "
        "Run the same command again after an interruption: finished points are skipped.",
    )
    sp.add_argument("config", metavar="CONFIG.yaml", help="sweep config (see examples/sweep.yaml)")
    sp.add_argument("--out", required=True, metavar="DIR", help="output folder (sweep.csv, sweep.yaml)")
    sp.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="local worker processes (default: all cores)"
    )
    sp.add_argument(
        "--scheduler", metavar="tcp://HOST:PORT", help="run on this Dask cluster instead of local processes"
    )
    sp.add_argument(
        "--max-points",
        type=int,
        metavar="N",
        # the planner's MAX_POINTS, written out: importing the planner here would load pydantic
        help="refuse a config of more points than this (default 100,000: a larger grid is more often a typo)",
    )
    sp.set_defaults(func=_sweep)


def _sweep(args: argparse.Namespace) -> int:
    from cimdse import sweep

    if args.jobs < 1:
        raise CimdseError(f"--jobs {args.jobs}: must be at least 1")
    config_path = Path(args.config)
    cfg = sweep.load_config(config_path)
    max_points = sweep.MAX_POINTS if args.max_points is None else args.max_points
    if max_points < 1:
        raise CimdseError(f"--max-points {max_points}: must be at least 1")
    plan = sweep.plan(cfg, base=config_path.parent, where=str(config_path), max_points=max_points)
    from tqdm import tqdm

    with tqdm(desc="sweep", unit="pt", file=sys.stderr, disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        summary = sweep.run_sweep(
            plan,
            args.out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            config=cfg,
            config_path=config_path,
            progress=progress,
        )
    print(
        f"{summary.total} points: {summary.already_done} already done, {summary.ok} ok, "
        f"{summary.invalid} invalid (see the status column) -> {summary.csv_path}"
    )
    if summary.failed:
        for line in summary.failed[:10]:
            print(f"cimdse: failed: {line}", file=sys.stderr)
        more = " (first 10 above)" if len(summary.failed) > 10 else ""
        print(
            f"cimdse: {len(summary.failed)} points failed{more}; they are not in the CSV and a rerun retries them",
            file=sys.stderr,
        )
        return 1
    return 0
