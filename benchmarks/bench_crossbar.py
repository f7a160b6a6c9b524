"""Simulated MVM throughput of the functional crossbar model, as ratios measured in
one run: a 256x256 crossbar, W8A8, 2-bit cells, 1-bit DAC, batch 1024 vectors.

- 6-bit full-range ADC (numpy reference and torch backend) vs. the float32 slice
  floor: the n_x * n_w * polarities GEMMs that bit slicing needs, as one float32 GEMM
  of the same shapes (the faster of numpy and torch), timed here too;
- the same work in CrossSim 3.2 (bit-sliced balanced cores, 1-bit input slices, a
  6-bit ADC per input bit with its full ("MAX") range, and its "GRANULAR" range),
  when CrossSim is importable (``CROSSSIM_PATH=/path/to/cross-sim``); cimdse does not
  depend on it;
- ideal ADC vs. one converting float32 GEMM (int64 -> float32, x @ w, -> int64).

Each figure is the best of N runs. The script runs itself twice: with one thread
(``OPENBLAS_NUM_THREADS=1``, ``torch.set_num_threads(1)``) and with all of this
machine's cores.

Run: python benchmarks/bench_crossbar.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosssim_config import crosssim_params  # noqa: E402
from timing import best_of, run_per_thread_setting, thread_label  # noqa: E402

REPEAT = 15


def crosssim_core(w, rows: int, adc_range: str):
    """CrossSim's AnalogCore for integer weights ``w`` [N, K] (its MVM orientation),
    configured like the cimdse tile (see crosssim_config)."""
    from simulator import AnalogCore

    return AnalogCore(w, crosssim_params(rows, adc_range, 255))


def measure(threads: int) -> None:
    import numpy as np
    import torch

    from cimdse.crossbar import CrossbarSpec, cells_per_weight, input_slices, mvm, polarities, program

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    b, k = 1024, 256
    spec = CrossbarSpec(rows=256, cols=256, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")
    nw, nx, p = cells_per_weight(spec, 8), input_slices(spec, 8), polarities(spec)
    n = spec.cols // (nw * p)  # outputs that fill the crossbar's columns
    x = rng.integers(0, 256, (b, k))
    w = rng.integers(-127, 128, (k, n))
    xt = torch.from_numpy(x)

    xs = rng.integers(0, 2, (nx * b, k)).astype(np.float32)
    cells = rng.integers(0, 4, (k, p * nw * n)).astype(np.float32)
    xs_t, cells_t = torch.from_numpy(xs), torch.from_numpy(cells)
    floor_np = best_of(lambda: xs @ cells)
    floor_t = best_of(lambda: xs_t @ cells_t)
    floor = min(floor_np, floor_t)

    xb = program(w, spec, 8)
    xbt = program(w, spec, 8, backend="torch")
    ref = mvm(x, xb, a_bits=8)
    assert np.array_equal(mvm(xt, xbt, a_bits=8).numpy(), ref), "torch backend differs from numpy"
    lossy_np = best_of(lambda: mvm(x, xb, a_bits=8))
    lossy_t = best_of(lambda: mvm(xt, xbt, a_bits=8))
    lossy_t_np = best_of(lambda: mvm(x, xbt, a_bits=8))
    lossy_t_prog = best_of(lambda: mvm(x, w, spec, backend="torch"))

    ideal_spec = spec.model_copy(update={"adc_bits": None, "adc_mode": "ideal"})
    xbt_ideal = program(w, ideal_spec, 8, backend="torch")
    assert np.array_equal(mvm(xt, xbt_ideal, a_bits=8).numpy(), x @ w)
    wf, wf_t = w.astype(np.float32), torch.from_numpy(w.astype(np.float32))
    conv_np = best_of(lambda: (x.astype(np.float32) @ wf).astype(np.int64))
    conv_t = best_of(lambda: (xt.float() @ wf_t).long())
    convert_gemm = min(conv_np, conv_t)
    xb_ideal = program(w, ideal_spec, 8)
    ideal_np = best_of(lambda: mvm(x, xb_ideal, a_bits=8))
    ideal_t = best_of(lambda: mvm(xt, xbt_ideal, a_bits=8))

    cs = {}
    try:
        import simulator  # noqa: F401

        for rng_opt in ("MAX", "GRANULAR"):
            core = crosssim_core(w.T.astype(np.float64), 256, rng_opt)
            xf = x.T.astype(np.float64)
            cs[rng_opt] = best_of(lambda core=core, xf=xf: core @ xf, repeat=3)
    except ImportError:
        pass

    def line(label: str, t: float, ref_t: float, ref_label: str) -> str:
        return f"  {label:<52s} {t * 1e3:8.2f} ms  {t / ref_t:5.2f}x {ref_label}"

    print(f"\n## {thread_label(threads)}")
    print(
        f"crossbar 256x256, W8A8, 2-bit cells, 1-bit DAC, batch {b}: K={k}, N={n} "
        f"({nx} input slices x {nw} cells x {p} polarities); best of {REPEAT}"
    )
    print(
        f"  float32 slice floor, one {nx * b}x{k} @ {k}x{p * nw * n} GEMM: numpy {floor_np * 1e3:.2f} ms, "
        f"torch {floor_t * 1e3:.2f} ms -> floor {floor * 1e3:.2f} ms"
    )
    print("6-bit full-range ADC (lossy):")
    print(line("torch backend, tensors in/out", lossy_t, floor, "floor (target <= 1.0x)"))
    print(line("torch backend, numpy in/out", lossy_t_np, floor, "floor"))
    print(line("torch backend, programming in the call", lossy_t_prog, floor, "floor"))
    print(line("numpy reference", lossy_np, floor, f"floor; torch is {lossy_np / lossy_t:.2f}x faster"))
    for opt, t in cs.items():
        print(line(f"CrossSim 3.2, ADC range {opt}", t, floor, f"floor; torch is {t / lossy_t:.1f}x faster"))
    if not cs:
        print("  CrossSim: not importable (set CROSSSIM_PATH); not measured")
    print("ideal ADC (lossless):")
    print(f"  one converting float32 GEMM: numpy {conv_np * 1e3:.3f} ms, torch {conv_t * 1e3:.3f} ms")
    print(line("torch backend, tensors in/out", ideal_t, convert_gemm, "converting GEMM (target <= 1.0x)"))
    print(line("numpy reference", ideal_np, convert_gemm, "converting GEMM"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="measure with this many threads only")
    args = ap.parse_args()
    if args.threads is not None:
        measure(args.threads)
    else:
        run_per_thread_setting(__file__)


if __name__ == "__main__":
    main()
