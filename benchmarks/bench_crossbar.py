"""Simulated MVM throughput of the functional crossbar model, as ratios measured in
one run: a 256x256 crossbar, W8A8, 2-bit cells, 1-bit DAC, batch 1024.

- 6-bit full-range ADC vs. the slice floor: the n_x * n_w * polarities GEMMs that
  bit slicing needs (one batched float32 GEMM of the same shapes), timed here too.
- ideal ADC vs. one GEMM of x @ w.

Run: python benchmarks/bench_crossbar.py
"""

from __future__ import annotations

import time

import numpy as np

from cimdse.crossbar import CrossbarSpec, cells_per_weight, input_slices, mvm, polarities, program


def best_of(fn, repeat: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    b, k = 1024, 256
    spec = CrossbarSpec(rows=256, cols=256, cell_bits=2, dac_bits=1, adc_bits=6, adc_mode="full_range")
    nw, nx, p = cells_per_weight(spec, 8), input_slices(spec, 8), polarities(spec)
    n = spec.cols // (nw * p)  # outputs that fill the crossbar's columns
    x = rng.integers(0, 256, (b, k))
    w = rng.integers(-127, 128, (k, n))

    xs = rng.integers(0, 2, (nx * b, k)).astype(np.float32)
    cells = rng.integers(0, 4, (k, p * nw * n)).astype(np.float32)
    floor = best_of(lambda: xs @ cells)
    xb = program(w, spec, 8)
    adc = best_of(lambda: mvm(x, xb, a_bits=8))
    adc_prog = best_of(lambda: mvm(x, w, spec))
    xf, wf = x.astype(np.float32), w.astype(np.float32)
    gemm = best_of(lambda: xf @ wf)
    convert_gemm = best_of(lambda: (x.astype(np.float32) @ wf).astype(np.int64))
    ideal_spec = spec.model_copy(update={"adc_bits": None, "adc_mode": "ideal"})
    xb_ideal = program(w, ideal_spec, 8)
    ideal = best_of(lambda: mvm(x, xb_ideal, a_bits=8))
    ideal_prog = best_of(lambda: mvm(x, w, ideal_spec))
    int_gemm = best_of(lambda: x @ w, repeat=3)

    macs = b * k * n
    print(
        f"crossbar 256x256, W8A8, 2-bit cells, 1-bit DAC, batch {b}: K={k}, N={n} "
        f"({nx} input slices x {nw} cells x {p} polarities)"
    )
    print(f"slice floor (one {nx * b}x{k} @ {k}x{p * nw * n} float32 GEMM): {floor * 1e3:8.2f} ms")
    print(
        f"mvm, 6-bit full-range ADC:                  {adc * 1e3:8.2f} ms  "
        f"ratio {adc / floor:5.2f}x (target <= 2x)  {b / adc:,.0f} MVM/s, {macs / adc / 1e9:.2f} GMAC/s"
    )
    print(f"  the same, programming the crossbar in the call: {adc_prog * 1e3:8.2f} ms  ratio {adc_prog / floor:5.2f}x")
    print(f"one GEMM x @ w (float32, inputs already float): {gemm * 1e3:8.2f} ms")
    print(f"one GEMM x @ w (int64, numpy):                  {int_gemm * 1e3:8.2f} ms")
    print(f"int -> float32, GEMM, -> int64 (no checks):     {convert_gemm * 1e3:8.2f} ms")
    print(
        f"mvm, ideal ADC (programmed once):           {ideal * 1e3:8.2f} ms  "
        f"ratio {ideal / gemm:5.2f}x vs float32 GEMM (target <= 1.5x), {ideal / convert_gemm:5.2f}x vs converting "
        f"GEMM, {ideal / int_gemm:5.2f}x vs int64 GEMM"
    )
    print(f"  the same, programming the crossbar in the call: {ideal_prog * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
