"""``cimdse layers`` (the layer IR as CSV) and ``cimdse compile`` (costs as CSV)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from cimdse.cli.common import add_arch_options

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.compiler.ir import Network

# torch and the compiler are imported when a command runs, not to parse its arguments


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="zoo name (mlp, lenet, resnet20, resnet18, ...) or FILE.py:factory")
    p.add_argument("--input", default=None, metavar="SHAPE", help="one sample, e.g. 3x224x224 (zoo default if omitted)")


def register(sub: argparse._SubParsersAction) -> None:
    lp = sub.add_parser("layers", help="print a model's crossbar layers (or digital ops) as CSV on stdout")
    _model_options(lp)
    what = lp.add_mutually_exclusive_group()
    what.add_argument(
        "--all", action="store_true", help="crossbar layers and digital ops in execution order, with a unit column"
    )
    what.add_argument("--digital", action="store_true", help="print the digital ops instead of the crossbar layers")
    lp.set_defaults(func=_layers)

    cp = sub.add_parser("compile", help="map a model onto an architecture; write layers.csv and summary.csv")
    _model_options(cp)
    add_arch_options(cp)
    bits = cp.add_mutually_exclusive_group(required=True)
    bits.add_argument("--bits", metavar="W,A", help="uniform weight and activation bits, e.g. 4,4")
    bits.add_argument(
        "--policy", metavar="FILE", help="per-layer bits: YAML/JSON by layer name or list, or .npy [L, 2]"
    )
    cp.add_argument(
        "--matmul", choices=("digital", "crossbar"), default="digital",
        help="where activation x activation matmuls (attention's Q K^T, A V) run: the digital unit (default) or "
        "crossbars written at run time",
    )  # fmt: skip
    cp.add_argument("--matmul-bits", default="8,8", metavar="W,A", help="bits of those matmuls on crossbars (8,8)")
    cp.add_argument("--out", required=True, metavar="DIR", help="output folder")
    cp.set_defaults(func=_compile)


def _network(args: argparse.Namespace) -> Network:
    from cimdse.compiler.frontend import trace_spec
    from cimdse.models import parse_input_shape

    shape = parse_input_shape(args.input) if args.input else None
    return trace_spec(args.model, shape)


def _layers(args: argparse.Namespace) -> int:
    import csv

    net = _network(args)
    cols, rows = net.all_table() if args.all else net.digital_table() if args.digital else net.layers_table()
    writer = csv.DictWriter(sys.stdout, cols, lineterminator="\n")  # as pandas writes it, without pandas
    writer.writeheader()
    writer.writerows(rows)
    print(
        f"# {len(net.layers)} crossbar layers ({net.crossbar_macs:,} MACs), {len(net.digital_ops)} digital ops "
        f"({net.matmul_macs:,} MACs in activation x activation matmuls)",
        file=sys.stderr,
    )
    return 0


def _compile(args: argparse.Namespace) -> int:
    from cimdse.cli.common import load_arch, output_dir, write_csv
    from cimdse.compiler import compile_network, policy_tables
    from cimdse.compiler.tables import digital_frame
    from cimdse.policy import load_policy, parse_bits, uniform_policy

    # Everything is validated and computed before the first file is written.
    matmul_bits = parse_bits(args.matmul_bits, where="--matmul-bits")
    net = _network(args)
    arch = load_arch(args.arch, args.overrides)
    policy = uniform_policy(*parse_bits(args.bits), len(net)) if args.bits else load_policy(args.policy, net)
    cn = compile_network(net, arch, matmul=args.matmul, matmul_bits=matmul_bits)
    layers_df, summary_df = policy_tables(cn, policy)
    digital_df = digital_frame(cn, policy)
    out = output_dir(args.out)
    for df, name in ((layers_df, "layers.csv"), (digital_df, "digital.csv"), (summary_df, "summary.csv")):
        write_csv(df, out / name)
    print(_table(layers_df, summary_df))
    print(_where_time_goes(layers_df, digital_df))
    print(f"# wrote {out / 'layers.csv'}, {out / 'digital.csv'}, {out / 'summary.csv'}", file=sys.stderr)
    return 0


def _table(layers_df, summary_df) -> str:  # noqa: ANN001 - pandas frames
    lines = [f"{'layer':28s} {'w/a':>5s} {'xbars':>7s} {'copies':>6s} {'latency_ms':>11s} {'energy_uJ':>10s}"]
    for r in layers_df.itertuples():
        lines.append(
            f"{r.name[:28]:28s} {f'{r.w_bits}/{r.a_bits}':>5s} {r.crossbars:7d} {r.replicas:6d} "
            f"{r.latency_s * 1e3:11.4f} {r.energy_j * 1e6:10.3f}"
        )
    s = summary_df.iloc[0]
    lines.append(
        f"{s['model']} on {s['arch']} ({s['mode']}, {s['schedule']}): latency {s['latency_s'] * 1e3:.4f} ms "
        f"(digital {s['digital_latency_s'] * 1e3:.4f} ms), interval {s['interval_s'] * 1e3:.4f} ms, "
        f"energy {s['energy_j'] * 1e6:.3f} uJ, {s['crossbars']}/{s['chip_crossbars']} crossbars, "
        f"area {s['occupied_area_mm2']:.3f} mm2 occupied of {s['area_mm2']:.3f}, "
        f"speedup vs W8A8 {s['speedup_vs_w8a8']:.3f}x (throughput {s['throughput_speedup_vs_w8a8']:.3f}x)"
    )
    parts = [c for c in summary_df.columns if c.startswith("energy_") and c != "energy_j"]
    lines.append(
        "energy by part: "
        + ", ".join(f"{c.removeprefix('energy_').removesuffix('_j')} {s[c] * 1e6:.4g} uJ" for c in parts)
    )
    return "\n".join(lines)


def _where_time_goes(layers_df, digital_df) -> str:  # noqa: ANN001 - pandas frames
    """Shares of the latency: crossbar layers, then the digital ops by category and unit."""
    parts = [f"crossbar layers {layers_df['latency_share'].sum():.1%}"]
    if len(digital_df):
        by = digital_df.groupby(["unit", "category"], sort=False)["latency_share"].sum().sort_values(ascending=False)
        parts += [f"{cat} on {unit} {share:.1%}" for (unit, cat), share in by.items() if share > 0]
    return "# where the time goes: " + ", ".join(parts)
