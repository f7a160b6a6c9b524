"""Cost-model figures: peak efficiency against ISAAC and PUMA, PUMA's MVMU, W4A4 speedups
of the zoo's CNNs on isaac (latency and throughput), energy by part, the ADC trade-off.

    python benchmarks/bench_costs.py

Nothing here is timed: every figure is the cost model's output, deterministic.
"""

from __future__ import annotations

from cimdse import arch, costs
from cimdse.compiler import compile_network
from cimdse.compiler.frontend import trace_spec
from cimdse.policy import uniform_policy

REFERENCES = {  # (GOPS/s/mm2, GOPS/W, source)
    "isaac": (478.95, 627.5, "ISAAC ISCA'16 Table IV, ISAAC-CE, 16-bit"),
    "puma": (577.0, 837.0, "PUMA ASPLOS'19 abstract"),
}
CNNS = ["resnet18", "vgg11", "vgg16", "mobilenetv2", "resnet20"]


def peaks() -> None:
    print("## peak figures (every crossbar busy, native precision, 1 MAC = 2 ops)")
    print(f"{'arch':8s} {'bits':>4s} {'GOPS':>10s} {'mm2':>8s} {'W':>7s} {'GOPS/mm2':>9s} {'GOPS/W':>8s}  reference")
    for name in arch.PRESET_NAMES:
        pk = costs.peak(arch.load(name))
        ref = ""
        if name in REFERENCES:
            ce, pe, src = REFERENCES[name]
            ref = f"{ce} / {pe} ({src}): {pk.gops_per_mm2 / ce - 1:+.1%} / {pk.gops_per_w / pe - 1:+.1%}"
        print(
            f"{name:8s} {pk.bits:4d} {pk.peak_gops:10.1f} {pk.area_mm2:8.2f} {pk.power_w:7.2f} "
            f"{pk.gops_per_mm2:9.2f} {pk.gops_per_w:8.1f}  {ref}"
        )


def puma_mvmu() -> None:
    spec = arch.load("puma").crossbar
    t_op = costs.op_ns(spec, 128, 128)
    e_op = costs.op_energy_pj(spec, 128, 128).sum()
    # one MVMU: a 128 x 128 matrix of 16-bit weights over 8 crossbars, 16 input bits
    print("\n## PUMA MVMU, 128x128 16-bit weights on 8 crossbars, 16-bit inputs")
    print(f"time {16 * t_op:.0f} ns (PUMA: 2304 ns = (16 + 2) x 128 ns with pipeline fill)")
    print(f"energy {16 * 8 * e_op / 1e3:.2f} nJ (PUMA: 43.97 nJ)")


def zoo_speedups() -> None:
    print("\n## zoo CNNs on isaac: W4A4 against W8A8")
    print(
        f"{'model':12s} {'mode':14s} {'W8A8 lat us':>11s} {'int us':>8s} {'W4A4 lat us':>11s} {'int us':>8s} "
        f"{'speedup':>7s} {'thr':>6s} {'digital':>7s}"
    )
    a = arch.load("isaac")
    for model in CNNS:
        net = trace_spec(model)
        cn = compile_network(net, a)
        e8 = cn.evaluate(uniform_policy(8, 8, len(net)))
        p4 = uniform_policy(4, 4, len(net))
        e4 = cn.evaluate(p4)
        mode = "resident" if e4.fits[0] else "re-programmed"
        print(
            f"{model:12s} {mode:14s} {e8.latency_s[0] * 1e6:11.1f} {e8.interval_s[0] * 1e6:8.2f} "
            f"{e4.latency_s[0] * 1e6:11.1f} {e4.interval_s[0] * 1e6:8.2f} {cn.speedup_vs_w8a8(p4)[0]:7.3f} "
            f"{cn.throughput_speedup_vs_w8a8(p4)[0]:6.3f} {e4.digital_latency_s[0] / e4.latency_s[0]:7.1%}"
        )


def energy_parts() -> None:
    print("\n## energy per inference by part, resnet18 (uJ)")
    net = trace_spec("resnet18")
    cases = [("isaac", 8), ("isaac", 4), ("cim-aq", 8), ("cim-aq", 4), ("demo", 8)]
    print(f"{'arch':8s} {'bits':>4s} " + " ".join(f"{p[:9]:>9s}" for p in costs.ENERGY_PARTS) + f" {'total':>9s}")
    for name, bits in cases:
        cn = compile_network(net, arch.load(name))
        ev = cn.evaluate(uniform_policy(bits, bits, len(net)))
        cells = " ".join(f"{v * 1e6:9.3g}" for v in ev.energy_parts_j[0])
        print(f"{name:8s} {bits:4d} {cells} {ev.energy_j[0] * 1e6:9.4g}")


def adc_tradeoff() -> None:
    print("\n## ADC bits on isaac: one full crossbar operation, and resnet18 W8A8")
    net = trace_spec("resnet18")
    print(
        f"{'adc':>4s} {'encoding':8s} {'t_conv ns':>9s} {'E_conv pJ':>9s} {'t_op ns':>8s} {'E_op pJ':>8s} "
        f"{'lossless':>8s} {'lat us':>8s} {'int us':>7s} {'E uJ':>8s}"
    )
    from cimdse.crossbar import adc_is_lossless

    for bits in (4, 5, 6, 7, 8):
        for enc in ("plain", "flip"):
            a = arch.load("isaac", [f"crossbar.adc_bits={bits}", f"crossbar.encoding={enc}"])
            spec = a.crossbar
            ev = compile_network(net, a).evaluate(uniform_policy(8, 8, len(net)))
            print(
                f"{bits:4d} {enc:8s} {costs.adc_conversion_ns(spec):9.3f} {costs.adc_energy_pj(spec):9.3f} "
                f"{costs.op_ns(spec, 128, 128):8.1f} {costs.op_energy_pj(spec, 128, 128).sum():8.1f} "
                f"{str(adc_is_lossless(spec)):>8s} {ev.latency_s[0] * 1e6:8.1f} {ev.interval_s[0] * 1e6:7.2f} "
                f"{ev.energy_j[0] * 1e6:8.1f}"
            )


def cimaq() -> None:
    net = trace_spec("resnet18")
    cn = compile_network(net, arch.load("cim-aq"))
    ev = cn.evaluate(uniform_policy(8, 8, len(net)))
    print(
        f"\n## cim-aq resnet18: W8A8 latency {ev.latency_s[0]:.4f} s, W4A4 speedup "
        f"{cn.speedup_vs_w8a8(uniform_policy(4, 4, len(net)))[0]:.3f}x (published 1.507 s, 2.86x)"
    )


if __name__ == "__main__":
    peaks()
    puma_mvmu()
    zoo_speedups()
    energy_parts()
    adc_tradeoff()
    cimaq()
