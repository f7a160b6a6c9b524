"""Icarus throughput of the generated tile under the cocotb testbench.

The testbench times its MVM phase itself (after compile, simulator and Python start
and weight programming), so the rates are steady state: simulated MVMs per second
and clock cycles per second, with the cocotb driver and checker in the loop.
Run from the repository root: ``python benchmarks/bench_rtl.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimdse import arch  # noqa: E402
from cimdse.rtl.verify import simulate  # noqa: E402


def measure(size: int, vectors: int, repeats: int) -> dict[str, float]:
    """Best of ``repeats`` runs: the testbench times its own MVM phase (after
    compiling, starting and programming), so fixed costs stay out of the rates."""
    spec = arch.load(
        "demo", [f"crossbar.rows={size}", f"crossbar.cols={size}", f"crossbar.active_rows={size}"]
    ).crossbar
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(repeats):
            t0 = time.perf_counter()
            res = simulate(spec, 8, 8, Path(tmp) / f"r{rep}", vectors=vectors, seed=rep)
            total = time.perf_counter() - t0
            if not res.ok:
                raise SystemExit(f"{size}x{size}: verification failed: {res.summary}")
            secs = res.summary["mvm_seconds"]
            if not best or secs < best["mvm_seconds"]:
                best = {
                    "mvm_seconds": secs,
                    "mvm_per_s": vectors / secs,
                    "cycles_per_s": res.summary["sim_cycles"] / secs,
                    "cycles_per_mvm": res.params.cycles,
                    "total_s": total,
                }
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    ap.add_argument("--vectors", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print("demo spec (2-bit cells, 1-bit DAC, 6-bit full-range ADC, 4 ADCs, differential-column), W8A8,")
    print(f"tile filled (K = rows, N = cols / 8), {args.vectors} vectors, best of {args.repeats}")
    print(f"{'tile':>7s} {'cycles/MVM':>10s} {'MVM/s':>8s} {'cycles/s':>10s} {'run_s':>6s}")
    for size in args.sizes:
        m = measure(size, args.vectors, args.repeats)
        print(
            f"{size:3d}x{size:<3d} {m['cycles_per_mvm']:10d} {m['mvm_per_s']:8.1f} "
            f"{m['cycles_per_s']:10.0f} {m['total_s']:6.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
