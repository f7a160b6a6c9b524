"""Sweep throughput: points per second with 1 and 2 local workers and on a 2-worker Dask LocalCluster.

    python benchmarks/bench_sweep.py [--repeat 3] [--big]

Each run is a fresh Python process (cold imports and caches, as a user's run is),
timed from before the plan to after the last row; the steady rate is that of the
second half of the rows. The ratio of the two-worker rate to the
one-worker rate says whether the parallel overhead is sane; the start-up column
(process spawn, torch and compiler imports, first compile) is what a short sweep pays.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sweep.yaml"
BIG = """\
models: [lenet, mlp, resnet20]
archs: ["{arch}"]
grid:
  crossbar.rows: [64, 128, 256]
  crossbar.cell_bits: [1, 2, 4]
  crossbar.adc_bits: [4, 6, 8]
  chip.tiles: [2, 4, 8, 16]
bits: ["8,8", "4,4", "2,4"]
"""

DRIVER = textwrap.dedent(
    """\
    import json, sys, time
    t0 = time.perf_counter()
    from cimdse import sweep

    def main():
        config, base, out, mode = sys.argv[1:5]
        plan = sweep.plan(sweep.load_config(config), base=base)
        stamps = []
        kw = {"jobs": 1}
        cluster = None
        if mode == "pool2":
            kw = {"jobs": 2}
        elif mode == "dask2":
            from distributed import LocalCluster
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            kw = {"scheduler": cluster.scheduler_address}
        t1 = time.perf_counter()
        s = sweep.run_sweep(plan, out, progress=False, on_row=lambda r: stamps.append(time.perf_counter()), **kw)
        t2 = time.perf_counter()
        if cluster is not None:
            cluster.close()
        assert s.written == len(plan.points) and not s.failed, s
        n = len(stamps)
        half = n // 2  # the second half of the rows: every worker is up and has traced its first model
        span = stamps[-1] - stamps[half]
        steady = (n - 1 - half) / span if span > 0 else float("nan")
        print(json.dumps({"points": n, "units": len(plan.units), "total_s": t2 - t0, "run_s": t2 - t1,
                          "startup_s": stamps[0] - t0, "steady_pts_s": steady}))

    if __name__ == "__main__":
        main()
    """
)

MODES = {
    "serial": "1 worker (in-process)",
    "pool2": "2 local worker processes",
    "dask2": "Dask LocalCluster, 2 workers",
}


def run(config: Path, mode: str, tmp: Path) -> dict:
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    out = Path(tempfile.mkdtemp(dir=tmp))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(driver), str(config), str(config.parent), str(out), mode],
        capture_output=True, text=True, env=env, cwd=ROOT, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(config: Path, label: str, repeat: int, tmp: Path) -> None:
    print(f"\n{label}")
    print(f"{'mode':32s} {'points':>6s} {'total s':>8s} {'pts/s':>7s} {'startup s':>9s} {'steady pts/s':>12s}")
    results = {}
    for mode, name in MODES.items():
        best = min((run(config, mode, tmp) for _ in range(repeat)), key=lambda r: r["total_s"])
        results[mode] = best
        print(
            f"{name:32s} {best['points']:6d} {best['total_s']:8.2f} {best['points'] / best['total_s']:7.1f} "
            f"{best['startup_s']:9.2f} {best['steady_pts_s']:12.1f}"
        )
    base = results["serial"]
    for mode in ("pool2", "dask2"):
        r = results[mode]
        print(
            f"  {MODES[mode]}: {base['total_s'] / r['total_s']:.2f}x the 1-worker rate end to end, "
            f"{r['steady_pts_s'] / base['steady_pts_s']:.2f}x once running"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--big", action="store_true", help="also a 324-unit, 972-point sweep with resnet20")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, best of {args.repeat}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench(EXAMPLE, f"example sweep ({EXAMPLE.relative_to(ROOT)})", args.repeat, tmp)
        if args.big:
            big = tmp / "big.yaml"
            big.write_text(BIG.format(arch=ROOT / "examples" / "arch_custom128.yaml"))
            bench(big, "bigger sweep (3 models incl. resnet20, 324 units, 972 points)", args.repeat, tmp)


if __name__ == "__main__":
    main()
