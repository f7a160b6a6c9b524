"""Steady-state simulation throughput of the generated tile: Icarus vs Verilator.

For each tile size (rows = cols = active_rows = size, the rest of the chosen preset,
W8A8, the layer filling the tile) the tile is generated and built once per simulator;
then the cocotb bench streams vectors back to back with ``out_ready`` high, waking
only on the handshakes (three times per MVM), and times that phase alone: no
compile, no simulator start, no weight programming, no back-pressure. Every result is
checked bit-exactly against the functional model and every initiation interval
against the cycle formula, so a figure only counts if the run is correct.

MVM/s = streamed vectors / wall seconds of the stream phase, best of ``--repeats``
runs of the built simulator; the Verilator/Icarus ratio is taken within one run of
this script. Simulators are single-threaded here.

With ``--network CKPT`` it instead times a whole trained network on the tiles (what
``cimdse verify --checkpoint CKPT --images N`` runs): every crossbar layer under the
simulator, checked layer by layer and by predictions; it prints the per-layer table and
the wall time of the run (builds included).

Run from the repository root: ``python benchmarks/bench_rtl.py`` or
``python benchmarks/bench_rtl.py --network runs/lenet/checkpoint.pt --images 16``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimdse import arch  # noqa: E402
from cimdse.rtl.generate import generate  # noqa: E402
from cimdse.rtl.verify import build, run_bench  # noqa: E402

#: seconds of streaming aimed at per run (the vector count is set from a probe)
TARGET_S = 3.0


def _adc_label(spec) -> str:
    if spec.adc_bits is None:
        return "ideal ADC"
    mode = spec.adc_mode if isinstance(spec.adc_mode, str) else f"shift {spec.adc_mode}"
    return f"{spec.adc_bits}-bit {mode.replace('_', '-')} ADC"


def measure(spec, simulator: str, folder: Path, repeats: int, max_vectors: int) -> dict[str, float]:
    tile = generate(spec, 8, 8, folder)
    t0 = time.perf_counter()
    build_s = build(tile, simulator, folder)
    build_total = time.perf_counter() - t0

    def run(n: int, rep: int) -> dict:
        summary, passed, log = run_bench(tile, simulator, folder, folder / f"run{rep}", vectors=0, stream=n, seed=rep)
        if not passed or summary.get("mismatches") or summary.get("interval_measured") != [tile.params.cycles]:
            raise SystemExit(f"{simulator} {spec.rows}x{spec.cols}: verification failed, see {log}: {summary}")
        return summary

    probe = run(4, 0)
    per_mvm = probe["stream_seconds"] / 4
    n = int(min(max_vectors, max(8, TARGET_S / max(per_mvm, 1e-6))))
    best = None
    for rep in range(repeats):
        s = run(n, rep + 1)
        if best is None or s["stream_seconds"] < best["stream_seconds"]:
            best = s
    return {
        "vectors": n,
        "mvm_per_s": n / best["stream_seconds"],
        "cycles_per_s": best["stream_cycles"] / best["stream_seconds"],
        "cycles_per_mvm": tile.params.cycles,
        "build_s": build_s or build_total,
        "module": tile.module,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="demo", help="preset whose tile is sized (default demo)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--simulators", nargs="+", default=["icarus", "verilator"])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-vectors", type=int, default=20000)
    ap.add_argument("--network", help="time this checkpoint's whole network on the tiles instead")
    ap.add_argument("--images", type=int, default=16, help="test images through the network (default 16)")
    args = ap.parse_args()
    if args.network:
        network(args)
        return
    base = arch.load(args.arch)
    spec0 = base.crossbar
    print(
        f"{base.name}: {spec0.cell_bits}-bit cells, {spec0.dac_bits}-bit DAC, {_adc_label(spec0)}, {spec0.adcs} ADCs, "
        f"{spec0.mapping}; rows = cols = active_rows = size, W8A8, tile filled; "
        f"stream phase only (back to back, out_ready high), best of {args.repeats}"
    )
    print(
        f"{'tile':>7s} {'simulator':>9s} {'cycles/MVM':>10s} {'vectors':>7s} {'MVM/s':>9s} {'cycles/s':>10s} "
        f"{'build_s':>7s} {'ratio':>6s}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-rtl-") as tmp:
        for size in args.sizes:
            spec = arch.load(
                args.arch, [f"crossbar.rows={size}", f"crossbar.cols={size}", f"crossbar.active_rows={size}"]
            ).crossbar
            rates = {}
            for sim in args.simulators:
                m = measure(spec, sim, Path(tmp) / f"{sim}_{size}", args.repeats, args.max_vectors)
                rates[sim] = m["mvm_per_s"]
                ratio = f"{m['mvm_per_s'] / rates['icarus']:5.0f}x" if sim != "icarus" and "icarus" in rates else ""
                print(
                    f"{size:3d}x{size:<3d} {sim:>9s} {m['cycles_per_mvm']:10d} {m['vectors']:7d} {m['mvm_per_s']:9.1f} "
                    f"{m['cycles_per_s']:10.0f} {m['build_s']:7.1f} {ratio:>6s}",
                    flush=True,
                )


def network(args: argparse.Namespace) -> None:
    import torch

    from cimdse.rtl.network import run_network

    sim = args.simulators[-1]
    print(
        f"{args.network}: {args.images} images, {sim}, arch {args.arch}, torch CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-rtl-net-") as tmp:
        t0 = time.perf_counter()
        run = run_network(
            args.network,
            Path(tmp),
            arch_name=args.arch,
            images=args.images,
            simulator=sim,
            progress=lambda line: print(line, flush=True),
        )
        wall = time.perf_counter() - t0
    for line in run.summary_lines():
        print(line)
    print(f"wall {wall:.1f} s (builds included; one run, the machine may be shared)")
    if not run.ok:
        raise SystemExit("the network on the tiles does not match: " + run.failure())


if __name__ == "__main__":
    main()
