"""Compiler benchmark: compile time of ImageNet models, and policies costed per second.

    python benchmarks/bench_compiler.py [--policies 100000] [--repeat 5]

Compile = trace (zoo model built on the meta device) + mapping tables; evaluation =
``CompiledNetwork.evaluate`` on random policies [P, L, 2] with bits in 1..8. Each
figure is the best of ``--repeat`` runs after one warm-up run (warm), one process.
"""

from __future__ import annotations

import argparse

import numpy as np
from timing import best_of

from cimdse import arch
from cimdse.compiler import compile_network
from cimdse.compiler.frontend import trace_spec

CASES = [
    ("cim-aq", [], "1 crossbar: re-programmed"),
    ("demo", [], "64 crossbars: re-programmed"),
    ("puma", [], "17664 crossbars: resident, pipelined"),
    ("isaac", [], "16128 crossbars: resident, pipelined (min-max copies)"),
    ("isaac", ["chip.schedule=sequential"], "16128 crossbars: resident, sequential (greedy copies)"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policies", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    trace_spec("lenet")  # warm up imports

    print(f"## compile time (224x224, best of {args.repeat}, warm)")
    for model in ("resnet18", "vgg16"):
        t_trace = best_of(lambda m=model: trace_spec(m), args.repeat)
        net = trace_spec(model)
        spec = arch.load("isaac")
        t_map = best_of(lambda n=net, s=spec: compile_network(n, s), args.repeat)
        print(f"{model:9s} {len(net.layers):3d} layers: trace {t_trace * 1e3:7.1f} ms, map {t_map * 1e3:6.1f} ms")

    net = trace_spec("resnet18")
    rng = np.random.default_rng(0)
    pols = rng.integers(1, 9, (args.policies, len(net), 2))
    print(f"\n## resnet18: {args.policies:,} random policies per evaluate() call (best of {args.repeat}, warm)")
    for name, sets, what in CASES:
        cn = compile_network(net, arch.load(name, sets))
        cn.evaluate(pols[:100])
        t = best_of(lambda c=cn: c.evaluate(pols), args.repeat)
        ev = cn.evaluate(pols)
        label = name + (" " + " ".join(sets) if sets else "")
        print(
            f"{label:36s} {args.policies / t:10,.0f} policies/s  resident {ev.fits.mean():5.1%}  "
            f"mean copies {ev.replicas.mean():6.2f}  ({what})"
        )


if __name__ == "__main__":
    main()
