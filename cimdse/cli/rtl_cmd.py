"""``cimdse rtl`` (write the tile's Verilog) and ``cimdse verify`` (lint, simulate
against the functional model, compare cycles with the formula)."""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from cimdse.cli.common import add_arch_options, load_arch, output_dir
from cimdse.errors import CimdseError

#: (w_bits, a_bits) verified when none are given: the 8-bit default and a narrow,
#: odd-width layer (a_bits not a multiple of typical DAC widths).
DEFAULT_BITS = ((8, 8), (4, 3))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rtl", help="write the Verilog of one crossbar tile")
    add_arch_options(p)
    p.add_argument("--w-bits", type=int, default=8, help="weight bits of the layer (default 8)")
    p.add_argument("--a-bits", type=int, default=8, help="activation bits of the layer (default 8)")
    _shape_options(p)
    p.add_argument("--out", required=True, help="output folder for the .v file")
    p.add_argument("--synth", action="store_true", help="also run yosys and print the cell counts")
    p.set_defaults(func=_rtl)

    v = sub.add_parser("verify", help="generate, lint and simulate the tile against the Python model (Icarus)")
    add_arch_options(v)
    v.add_argument("--w-bits", type=int, help=f"weight bits (default: verify {_bits_text()})")
    v.add_argument("--a-bits", type=int, help="activation bits (with --w-bits)")
    _shape_options(v)
    v.add_argument("--vectors", type=int, default=20, help="input vectors per parameter set (default 20)")
    v.add_argument("--seed", type=int, default=0, help="seed of weights and inputs (default 0)")
    v.add_argument("--out", help="keep the build folders here (default: a temporary folder)")
    v.add_argument("--synth", action="store_true", help="also run yosys on each tile and print the cell counts")
    v.set_defaults(func=_verify)


def _bits_text() -> str:
    return " and ".join(f"W{w}A{a}" for w, a in DEFAULT_BITS)


def _shape_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", type=int, help="layer inputs K (default: as many as the tile's rows hold)")
    p.add_argument("--outputs", type=int, help="layer outputs N (default: as many as the tile's columns hold)")


def _module_name(arch_name: str) -> str:
    return "cimdse_tile_" + re.sub(r"\W", "_", arch_name).strip("_").lower()


def _rtl(args: argparse.Namespace) -> int:
    from cimdse.rtl import generate

    arch = load_arch(args.arch, args.overrides)
    out = output_dir(args.out)
    module = _module_name(arch.name)
    path = out / f"{module}_w{args.w_bits}a{args.a_bits}.v"
    p = generate(arch.crossbar, args.w_bits, args.a_bits, path, module=module, k=args.inputs, n=args.outputs)
    print(
        f"wrote {path}: module {module}, K={p.k} inputs, N={p.n} outputs, {p.rows_used}x{p.cols_used} cells used, "
        f"{p.cycles} cycles per MVM"
    )
    if args.synth:
        _print_synth(path, module)
    return 0


def _print_synth(path: Path, module: str) -> None:
    from cimdse.rtl.synth import synth_cells

    cells = synth_cells(path, module)
    ffs = sum(v for k, v in cells.items() if "DFF" in k)
    print(f"yosys synth {path.name}: {cells['total']} cells ({ffs} flip-flops, {cells['total'] - ffs} logic)")


def _verify(args: argparse.Namespace) -> int:
    from cimdse.rtl.verify import failure_reason, require_icarus, simulate

    require_icarus()
    if (args.w_bits is None) != (args.a_bits is None):
        raise CimdseError("give --w-bits and --a-bits together (or neither, to verify the default set)")
    if args.vectors < 1:
        raise CimdseError(f"--vectors must be at least 1, got {args.vectors}")
    arch = load_arch(args.arch, args.overrides)
    bits = [(args.w_bits, args.a_bits)] if args.w_bits is not None else list(DEFAULT_BITS)
    with tempfile.TemporaryDirectory(prefix="cimdse-verify-") as tmp:
        root = output_dir(args.out) if args.out else Path(tmp)
        header = (
            f"{'parameter set':40s} {'vectors':>7s} {'mismatches':>10s} {'saturated':>9s} "
            f"{'cycles':>7s} {'formula':>7s} {'time_s':>6s}  result"
        )
        print(header, flush=True)
        failures = []
        for w, a in bits:
            label = f"{arch.name} W{w}A{a}"
            res = simulate(
                arch.crossbar,
                w,
                a,
                root / f"{arch.name}_w{w}a{a}",
                vectors=args.vectors,
                seed=args.seed,
                k=args.inputs,
                n=args.outputs,
            )
            p, s = res.params, res.summary
            label += f" K={p.k} N={p.n}"
            measured = ",".join(str(c) for c in s.get("cycles_measured", [])) or "-"
            print(
                f"{label:40s} {args.vectors:7d} {s.get('mismatches', '-'):>10} "
                f"{s.get('saturated_conversions', '-'):>9} "
                f"{measured:>7s} {p.cycles:7d} {res.seconds:6.1f}  {'ok' if res.ok else 'FAIL'}",
                flush=True,
            )
            if not res.ok:
                failures.append(f"{label}: {failure_reason(res)}")
            if args.synth:
                _print_synth(root / f"{arch.name}_w{w}a{a}" / "cimdse_tile.v", "cimdse_tile")
    if failures:
        raise CimdseError("RTL verification failed:\n  " + "\n  ".join(failures))
    print(f"all {len(bits)} parameter set(s) match the functional model bit-exactly and the cycle formula")
    return 0
