"""``cimdse rtl`` (write the tile's Verilog) and ``cimdse verify`` (lint, simulate
against the functional model, compare cycles with the formula; or run a trained
layer of a checkpoint on tile instances)."""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from cimdse.cli.common import add_arch_options, add_seed_option, load_arch, output_dir
from cimdse.errors import CimdseError

if TYPE_CHECKING:
    from cimdse.rtl.generate import TileParams

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
    p.add_argument(
        "--synth",
        action="store_true",
        help="also run yosys: cells, flip-flops and latches of the tile and its digital part",
    )
    p.set_defaults(func=_rtl)

    v = sub.add_parser(
        "verify", help="generate, lint and simulate the tile against the Python model (Icarus or Verilator)"
    )
    add_arch_options(v, required=False)
    v.add_argument("--w-bits", type=int, help=f"weight bits (default: verify {_bits_text()})")
    v.add_argument("--a-bits", type=int, help="activation bits (with --w-bits)")
    _shape_options(v)
    v.add_argument(
        "--vectors", type=int, default=20, help="vectors checked cycle by cycle, with back-pressure (default 20)"
    )
    v.add_argument("--stream", type=int, default=20, help="vectors streamed back to back after them (default 20)")
    v.add_argument("--simulator", choices=("icarus", "verilator"), default="icarus", help="default icarus")
    add_seed_option(v, 0, "seed of weights and inputs (default 0)")
    v.add_argument("--out", help="keep the build folders here (default: a temporary folder)")
    v.add_argument("--synth", action="store_true", help="also run yosys on each tile and print the cell counts")
    v.add_argument(
        "--checkpoint", help="run this trained network (cimdse train) on the tiles: every layer, or --layer's"
    )
    v.add_argument("--layer", help="run only this layer of the checkpoint")
    v.add_argument("--images", type=int, default=2, help="test images streamed through the layer (default 2)")
    v.add_argument("--data-dir", help="data folder of the checkpoint's dataset (default: the one it was trained on)")
    v.set_defaults(func=_verify)


def _bits_text() -> str:
    return " and ".join(f"W{w}A{a}" for w, a in DEFAULT_BITS)


def _shape_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", type=int, help="layer inputs K (default: as many as the tile's rows hold)")
    p.add_argument("--outputs", type=int, help="layer outputs N (default: as many as the tile's columns hold)")


def _rtl(args: argparse.Namespace) -> int:
    from cimdse.rtl import generate

    arch = load_arch(args.arch, args.overrides)
    tile = generate(arch.crossbar, args.w_bits, args.a_bits, output_dir(args.out), k=args.inputs, n=args.outputs)
    p = tile.params
    print(
        f"wrote {tile.path}: module {tile.module} ({arch.name} W{args.w_bits}A{args.a_bits}), K={p.k} inputs, "
        f"N={p.n} outputs, {p.rows_used}x{p.cols_used} cells used, {p.cycles} cycles per MVM"
    )
    if args.synth:
        _print_synth(tile.path, tile.module, tile.params)
    return 0


def _print_synth(path: Path, module: str, params: TileParams) -> None:
    """yosys cell counts of the tile's digital part alone (seconds) and of the whole
    tile (minutes for a large array)."""
    from cimdse.rtl.synth import synth_digital_part, synth_stats

    for what, run in (
        ("digital part", lambda: synth_digital_part(params)),
        ("tile", lambda: synth_stats(path, module)),
    ):
        s = run()
        print(
            f"yosys synth {what:12s} {module}: {s.total:7d} cells ({s.flip_flops} flip-flops, "
            f"{s.latches} latches, {s.logic} logic)",
            flush=True,
        )


def _verify(args: argparse.Namespace) -> int:
    from cimdse.rtl.verify import require_simulator

    require_simulator(args.simulator)
    if args.vectors < 0 or args.stream < 0 or args.vectors + args.stream < 1:
        raise CimdseError(
            f"--vectors and --stream must be >= 0 with at least 1 vector, got {args.vectors}/{args.stream}"
        )
    if args.checkpoint or args.layer:
        return _verify_layer(args)
    if (args.w_bits is None) != (args.a_bits is None):
        raise CimdseError("give --w-bits and --a-bits together (or neither, to verify the default set)")
    arch = load_arch(args.arch or "demo", args.overrides)
    bits = [(args.w_bits, args.a_bits)] if args.w_bits is not None else list(DEFAULT_BITS)
    from cimdse.rtl.verify import failure_reason, simulate

    with tempfile.TemporaryDirectory(prefix="cimdse-verify-") as tmp:
        root = output_dir(args.out) if args.out else Path(tmp)
        print(
            f"{'parameter set':40s} {'vectors':>7s} {'mismatches':>10s} {'saturated':>9s} "
            f"{'cycles':>7s} {'formula':>7s} {'build_s':>7s} {'MVM/s':>8s} {'time_s':>6s}  result  ({args.simulator})",
            flush=True,
        )
        failures = []
        for w, a in bits:
            label = f"{arch.name} W{w}A{a}"
            build = root / f"{arch.name}_w{w}a{a}_{args.simulator}"
            res = simulate(
                arch.crossbar,
                w,
                a,
                build,
                simulator=args.simulator,
                vectors=args.vectors,
                stream=args.stream,
                seed=args.seed,
                k=args.inputs,
                n=args.outputs,
            )
            p, s = res.params, res.summary
            label += f" K={p.k} N={p.n}"
            measured = ",".join(str(c) for c in s.get("cycles_measured", [])) or "-"
            rate = f"{s['stream_vectors'] / s['stream_seconds']:8.0f}" if s.get("stream_seconds") else f"{'-':>8s}"
            print(
                f"{label:40s} {s.get('vectors', 0):7d} {s.get('mismatches', '-'):>10} "
                f"{s.get('saturated_conversions', '-'):>9} "
                f"{measured:>7s} {p.cycles:7d} {res.build_seconds:7.1f} {rate} {res.seconds:6.1f}  "
                f"{'ok' if res.ok else 'FAIL'}",
                flush=True,
            )
            if not res.ok:
                failures.append(f"{label}: {failure_reason(res)}")
            if args.synth:
                _print_synth(res.tile_path, res.module, res.params)
    if failures:
        raise CimdseError("RTL verification failed:\n  " + "\n  ".join(failures))
    print(
        f"all {len(bits)} parameter set(s) match the functional model bit-exactly and the cycle formula "
        f"({args.simulator}); MVM/s is the back-to-back phase's simulated MVMs per wall second"
    )
    return 0


def _verify_layer(args: argparse.Namespace) -> int:
    """A trained layer (``--layer``) or the whole network on as many tile instances as
    the mapping needs (the digital ops between layers in Python); per layer: tiles,
    vectors, mismatches, build and simulator time."""
    if not args.checkpoint:
        raise CimdseError("--layer needs --checkpoint")
    if args.images < 1:
        raise CimdseError(f"--images must be at least 1, got {args.images}")
    if args.w_bits is not None or args.a_bits is not None or args.inputs or args.outputs:
        raise CimdseError("--w-bits/--a-bits/--inputs/--outputs come from the checkpoint's layers: leave them out")
    if args.layer:
        from cimdse.rtl.layer import run_layer

        what, run = "the layer", functools.partial(run_layer, args.checkpoint, args.layer)
    else:
        from cimdse.rtl.network import run_network

        what, run = "the network", functools.partial(run_network, args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="cimdse-verify-") as tmp:
        root = output_dir(args.out) if args.out else Path(tmp)
        res = run(
            root,
            arch_name=args.arch,
            overrides=args.overrides,
            images=args.images,
            simulator=args.simulator,
            vectors=min(args.vectors, 4),
            seed=args.seed,
            data_dir=args.data_dir,
            progress=lambda line: print(line, flush=True),
        )
    for line in res.summary_lines():
        print(line)
    if not res.ok:
        raise CimdseError(f"{what} on the RTL tiles does not match: " + res.failure())
    return 0
