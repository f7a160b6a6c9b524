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

from crosssim_config import add_crosssim_path, crosssim_params  # noqa: E402
from timing import best_of, device_label, run_per_thread_setting, thread_label  # noqa: E402

REPEAT = 15


def crosssim_core(w, rows: int, adc_range: str, gpu: bool = False):
    """CrossSim's AnalogCore for integer weights ``w`` [N, K] (its MVM orientation),
    configured like the cimdse tile (see crosssim_config)."""
    from simulator import AnalogCore

    return AnalogCore(w, crosssim_params(rows, adc_range, 255, gpu))


def measure(threads: int, device: str = "cpu", batch: int = 1024, repeat: int = REPEAT) -> None:
    import numpy as np
    import torch

    from cimdse import crossbar_torch as ct
    from cimdse.crossbar import CrossbarSpec, cells_per_weight, input_slices, mvm, polarities, program

    torch.set_num_threads(threads)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else None
    rng = np.random.default_rng(0)
    b, k = batch, 256
    spec = CrossbarSpec(rows=256, cols=256, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")
    nw, nx, p = cells_per_weight(spec, 8), input_slices(spec, 8), polarities(spec)
    n = spec.cols // (nw * p)  # outputs that fill the crossbar's columns
    x = rng.integers(0, 256, (b, k))
    w = rng.integers(-127, 128, (k, n))
    xt = torch.from_numpy(x).to(device)

    def best(fn, r=repeat):
        return best_of(fn, r, sync)

    xs = rng.integers(0, 2, (nx * b, k)).astype(np.float32)
    cells = rng.integers(0, 4, (k, p * nw * n)).astype(np.float32)
    xs_t, cells_t = torch.from_numpy(xs).to(device), torch.from_numpy(cells).to(device)
    floor_t = best(lambda: xs_t @ cells_t)
    floors = {"float32 torch": floor_t}
    if cuda:
        xs8, cells8 = xs_t.to(torch.int8), ct.column_major(cells_t.to(torch.int8))
        floors["int8 torch._int_mm"] = best(lambda: ct.int_mm(xs8, cells8))
        xs16, cells16 = xs_t.half(), cells_t.half()
        floors["float16 torch"] = best(lambda: xs16 @ cells16)
        floor_key = "int8 torch._int_mm"
    else:
        floors["float32 numpy"] = best(lambda: xs @ cells)
        floor_key = min(floors, key=floors.get)
    floor = floors[floor_key]

    ref_n = min(b, 4096)
    xb = program(w, spec, 8)
    ref = mvm(x[:ref_n], xb, a_bits=8)
    kernels = {}
    for kern in (None, "int8", "float32", "float64", "float16", "bfloat16"):
        if kern in ("float16", "bfloat16", "float64") and not cuda:
            continue
        xbt = ct.program(w, spec, 8, device=device, kernel=kern)
        got = ct.mvm(xt[:ref_n], xbt, a_bits=8).cpu().numpy()
        assert np.array_equal(got, ref), f"torch backend ({xbt.kernel}) differs from numpy"
        label = f"measured choice: {xbt.kernel}" if kern is None else f"forced {xbt.kernel}"
        if xbt.layout.pack > 1:
            label += f", {xbt.layout.pack} slices per GEMM row"
        kernels[label] = best(lambda xbt=xbt: ct.mvm(xt, xbt, a_bits=8))
    chosen = next(iter(kernels.values()))
    xbt = ct.program(w, spec, 8, device=device)
    lossy_t_np = best(lambda: ct.mvm(x, xbt, a_bits=8)) if not cuda else None
    lossy_t_prog = best(lambda: ct.mvm(xt, w, spec, device=device))
    lossy_np = best_of(lambda: mvm(x, xb, a_bits=8), max(1, repeat // 5)) if b <= 4096 else None

    ideal_spec = spec.model_copy(update={"adc_bits": None, "adc_mode": "ideal"})
    xbt_ideal = ct.program(w, ideal_spec, 8, device=device)
    assert np.array_equal(ct.mvm(xt[:ref_n], xbt_ideal, a_bits=8).cpu().numpy(), x[:ref_n] @ w)
    wf_t = torch.from_numpy(w.astype(np.float32)).to(device)
    convert_gemm = best(lambda: (xt.float() @ wf_t).long())
    ideal_t = best(lambda: ct.mvm(xt, xbt_ideal, a_bits=8))

    cs = {}
    if add_crosssim_path():
        for rng_opt in ("MAX", "GRANULAR"):
            try:
                core = crosssim_core(w.T.astype(np.float64), 256, rng_opt, gpu=cuda)
                if cuda:
                    import cupy

                    xf = cupy.asarray(x.T.astype(np.float64))
                else:
                    xf = x.T.astype(np.float64)
                cs[rng_opt] = best_of(lambda core=core, xf=xf: core @ xf, 3, sync)
            except Exception as err:  # noqa: BLE001  # a benchmark of someone else's code: report and go on
                print(f"  CrossSim {rng_opt}: failed ({type(err).__name__}: {err})")

    def line(label: str, t: float, ref_t: float, ref_label: str) -> str:
        return f"  {label:<60s} {t * 1e3:9.3f} ms  {t / ref_t:6.2f}x {ref_label}"

    print(f"\n## {thread_label(threads)}")
    print(device_label(device))
    print(
        f"crossbar 256x256, W8A8, 2-bit cells, 1-bit DAC, batch {b}: K={k}, N={n} "
        f"({nx} input slices x {nw} cells x {p} polarities); best of {repeat}"
    )
    print(
        f"  slice floor, one {nx * b}x{k} @ {k}x{p * nw * n} GEMM: "
        + ", ".join(f"{key} {v * 1e3:.3f} ms" for key, v in floors.items())
        + f" -> floor = {floor_key} {floor * 1e3:.3f} ms"
    )
    print("6-bit full-range ADC (lossy):")
    for label, t in kernels.items():
        print(line(f"torch backend, tensors in/out, {label}", t, floor, "floor (target <= 1.0x CPU, 2x CUDA)"))
    if lossy_t_np is not None:
        print(line("torch backend, numpy in/out", lossy_t_np, floor, "floor"))
    print(line("torch backend, programming in the call", lossy_t_prog, floor, "floor"))
    if lossy_np is not None:
        print(line("numpy reference", lossy_np, floor, f"floor; torch is {lossy_np / chosen:.2f}x faster"))
    for opt, t in cs.items():
        where = "GPU" if cuda else "CPU"
        print(line(f"CrossSim 3.2 ({where}), ADC range {opt}", t, floor, f"floor; torch is {t / chosen:.1f}x faster"))
    if not cs:
        print("  CrossSim: not importable (set CROSSSIM_PATH); not measured")
    print("ideal ADC (lossless):")
    print(f"  one converting float32 GEMM: torch {convert_gemm * 1e3:.3f} ms")
    print(line("torch backend, tensors in/out", ideal_t, convert_gemm, "converting GEMM (target <= 1.0x)"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="measure with this many threads only")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch", type=int, default=1024, help="input vectors per call")
    ap.add_argument("--repeat", type=int, default=REPEAT)
    args = ap.parse_args()
    if args.threads is not None or args.device != "cpu":
        measure(args.threads or 1, args.device, args.batch, args.repeat)
    else:
        run_per_thread_setting(__file__, sys.argv[1:])


if __name__ == "__main__":
    main()
