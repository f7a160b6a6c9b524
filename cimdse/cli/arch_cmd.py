"""``cimdse arch list`` and ``cimdse arch show``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from cimdse.arch import ArchSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("arch", help="list and show architecture specs")
    asub = p.add_subparsers(dest="arch_command", required=True, metavar="ACTION")
    lp = asub.add_parser("list", help="list the presets")
    lp.set_defaults(func=_list)
    sp = asub.add_parser("show", help="print a resolved spec with its area and power")
    sp.add_argument("name", metavar="NAME|FILE")
    sp.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec field by dotted key, e.g. crossbar.rows=128",
    )
    sp.add_argument("--json", action="store_true", help="print the spec and its derived figures as one JSON object")
    sp.set_defaults(func=_show)


def _list(args: argparse.Namespace) -> int:
    from cimdse import arch as arch_mod

    for name in arch_mod.PRESET_NAMES:
        spec = arch_mod.load(name)
        xb = spec.crossbar
        adc = "ideal" if xb.adc_bits is None else f"{xb.adc_bits}b"
        print(
            f"{name:8s} {xb.rows}x{xb.cols} cell {xb.cell_bits}b dac {xb.dac_bits}b adc {adc} "
            f"{xb.mapping}, {spec.chip.crossbars} crossbars"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    from cimdse import arch as arch_mod
    from cimdse.cli.common import load_arch

    spec = load_arch(args.name, args.overrides)
    if args.json:
        print(json.dumps({"spec": spec.model_dump(mode="json"), **derived(spec)}, indent=2))
        return 0
    print(arch_mod.to_yaml(spec), end="")
    print()
    print(format_area_power(spec))
    return 0


def derived(spec: ArchSpec) -> dict[str, float | int | str]:
    """Chip area and power and the peak figures at the chip's native precision."""
    from cimdse import costs

    pk = costs.peak(spec)
    return {
        "area_mm2": pk.area_mm2,
        "power_w": pk.power_w,
        "peak_gops": pk.peak_gops,
        "gops_per_mm2": pk.gops_per_mm2,
        "gops_per_w": pk.gops_per_w,
        "precision_bits": pk.bits,
        "precision": f"{pk.bits}-bit weights and inputs; one MAC = 2 ops; every crossbar busy",
    }


def format_area_power(spec: ArchSpec) -> str:
    from cimdse import costs

    lines = [
        f"# area and power per tile ({spec.chip.crossbars_per_tile} crossbars)",
        f"{'component':34s} {'count':>8s} {'area_mm2':>10s} {'power_mw':>10s}  source",
    ]
    for part in costs.tile_parts(spec):
        lines.append(f"{part.name:34s} {part.count:8.4g} {part.area_mm2:10.5f} {part.power_mw:10.4f}  {part.source}")
    ap = costs.area_power(spec)
    lines += [
        f"{'tile total':34s} {'':8s} {ap.tile_area_mm2:10.5f} {ap.tile_power_mw:10.4f}",
        f"{'chip total (' + str(spec.chip.tiles) + ' tiles + chip parts)':34s} {'':8s} "
        f"{ap.chip_area_mm2:10.4f} {ap.chip_power_mw:10.2f}",
    ]
    for x in spec.chip.chip_components:
        lines.append(f"  chip part {x.name}: {x.count * x.area_mm2:.4f} mm2, {x.count * x.power_mw:.1f} mW  {x.source}")
    t, xb = spec.crossbar.timing, spec.crossbar
    if t.op_ns:
        timing = f", fixed {t.op_ns} ns per crossbar operation"
    elif xb.adc_bits is None:
        timing = ", ADC not modelled (ideal)"
    else:
        timing = (
            f", ADC {costs.adc_conversion_ns(xb):.3f} ns and {costs.adc_energy_pj(xb):.3f} pJ per conversion "
            f"({xb.adc_model} law){', overlapped with reads' if t.adc_overlap else ''}"
        )
    lines.append(f"# timing: read {t.read_ns} ns, write {t.write_us} us per crossbar" + timing)
    d = derived(spec)
    lines.append(
        f"# peak at {d['precision_bits']}-bit ops: {d['peak_gops']:.1f} GOPS, {d['gops_per_mm2']:.2f} GOPS/s/mm2, "
        f"{d['gops_per_w']:.1f} GOPS/W"
    )
    return "\n".join(lines)
