"""Hardware-accurate inference of whole networks: images/s of the crossbar model
(torch backend, and the numpy reference) against CrossSim 3.2's torch analog layers
on the same network and crossbar configuration, against fake quantization, and
against the network's slice floor.

Configuration (both simulators): 64x64 arrays, W8A8, 8-bit weights in 4 bit-sliced
differential 2-bit cells, 8-bit inputs in 1-bit slices, a 6-bit ADC per input bit
over the full range (cimdse ``adc_mode=full_range``; CrossSim ``MAX``), and CrossSim's
``GRANULAR`` ADC range. Networks: lenet on 8x8 digits (the embedded dataset) and the
CIFAR ResNet-20 on 3x32x32 inputs (random images, untrained weights, calibrated on
them: throughput does not depend on the values).

Slice floor of a network: per crossbar layer, input slices x weight slices x
polarities x the time of that layer's float32 GEMM ([B*L, K] @ [K, N], per conv
group, the faster of numpy and torch), summed over layers.

Run: CROSSSIM_PATH=/path/to/cross-sim python benchmarks/bench_network.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosssim_config import crosssim_params  # noqa: E402
from timing import best_of, run_per_thread_setting, thread_label  # noqa: E402

ROWS = 64


def slice_floor(qmodel, x, arch, best) -> float:
    """Sum over crossbar layers of slices x that layer's float32 GEMM time."""
    import numpy as np
    import torch

    from cimdse.crossbar import cells_per_weight, input_slices, polarities
    from cimdse.quant.apply import quant_layers

    shapes = {}
    hooks = [
        q.register_forward_hook(lambda m, inp, out, name=name: shapes.__setitem__(name, (inp[0].shape, out.shape)))
        for name, q in quant_layers(qmodel).items()
    ]
    with torch.no_grad():
        qmodel(x)
    for h in hooks:
        h.remove()
    total = 0.0
    spec = arch.crossbar
    for name, q in quant_layers(qmodel).items():
        _, out_shape = shapes[name]
        layer = q.export()
        m = out_shape[0] * (int(np.prod(out_shape[2:])) if len(out_shape) > 2 else 1)
        n = layer.n // layer.groups
        a, w = torch.rand(m, layer.k), torch.rand(layer.k, n)
        an, wn = a.numpy(), w.numpy()
        t = min(best(lambda a=a, w=w: a @ w), best(lambda an=an, wn=wn: an @ wn)) * layer.groups
        total += t * input_slices(spec, layer.a_bits) * cells_per_weight(spec, layer.w_bits) * polarities(spec)
    return total


def measure(threads: int, repeat: int) -> None:
    import torch

    from cimdse import arch as arch_mod

    torch.set_num_threads(threads)
    arch = arch_mod.load("demo", ["crossbar.adc_mode=full_range"])  # 64x64, 2-bit cells, 1-bit DAC, 6-bit ADC
    try:
        import simulator  # noqa: F401
        from simulator.algorithms.dnn.torch.convert import from_torch

        have_cs = True
    except ImportError:
        have_cs = False
    print(f"\n## {thread_label(threads)}")
    print(
        "| network | batch | crossbar model, torch (img/s) | numpy reference (img/s) | CrossSim MAX (img/s) "
        "| CrossSim GRANULAR (img/s) | torch / CrossSim MAX | torch / CrossSim GRANULAR | slice floor (img/s) "
        "| time / slice floor | fake quant (img/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = [("lenet", 256, 256), ("resnet20", 64, 16)]
    for name, batch, slow_batch in cases:
        print(_case(name, batch, slow_batch, arch, repeat, from_torch if have_cs else None))
    print(
        f"\nbest of {repeat} (numpy reference and CrossSim: best of {max(1, repeat // 3)}, timed on the first "
        f"{cases[1][2]} images for resnet20 and scaled to images/s)"
    )


def _case(name: str, batch: int, slow_batch: int, arch, repeat: int, from_torch) -> str:
    """One table row: images/s of every implementation on one network."""
    import copy

    import torch

    from cimdse import models
    from cimdse.data import load_dataset
    from cimdse.quant.apply import quantize
    from cimdse.quant.hardware import integer_model

    torch.manual_seed(0)
    if name == "lenet":
        model = models.build("lenet", num_classes=10, seed=0)
        x = load_dataset("digits").test.tensors[0][:batch]
    else:
        model = models.build("resnet20", num_classes=10, seed=0)
        x = torch.rand(batch, 3, 32, 32)
    model.eval()
    q = quantize(model, _uniform(model, x, 8), x)
    hw = integer_model(q, arch=arch, backend="torch")
    hw_np = integer_model(q, arch=arch, backend="numpy")
    xs = x[:slow_batch]
    slow_repeat = max(1, repeat // 3)
    with torch.no_grad():
        t_torch = best_of(lambda: hw(x), repeat)
        t_np = best_of(lambda: hw_np(xs), slow_repeat) * batch / slow_batch
        t_fq = best_of(lambda: q(x), repeat)
    floor = slice_floor(q, x, arch, lambda fn: best_of(fn, repeat))
    cs = {}
    if from_torch is not None:
        for opt in ("MAX", "GRANULAR"):
            params = crosssim_params(ROWS, opt, float(x.max()))
            analog = from_torch(copy.deepcopy(model), params, fuse_batchnorm=True).eval()
            with torch.no_grad():
                cs[opt] = best_of(lambda analog=analog: analog(xs), slow_repeat) * batch / slow_batch
    ips = {k: batch / v for k, v in {"torch": t_torch, "numpy": t_np, "fq": t_fq, "floor": floor, **cs}.items()}
    csm = f"{ips['MAX']:,.1f}" if "MAX" in ips else "n/a"
    csg = f"{ips['GRANULAR']:,.1f}" if "GRANULAR" in ips else "n/a"
    rm = f"{ips['torch'] / ips['MAX']:.2f}x" if "MAX" in ips else "n/a"
    rg = f"{ips['torch'] / ips['GRANULAR']:.2f}x" if "GRANULAR" in ips else "n/a"
    return (
        f"| {name} | {batch} | {ips['torch']:,.1f} | {ips['numpy']:,.1f} | {csm} | {csg} | {rm} | {rg} "
        f"| {ips['floor']:,.1f} | {t_torch / floor:.2f}x | {ips['fq']:,.1f} |"
    )


def _uniform(model, x, bits: int) -> list[tuple[int, int]]:
    from cimdse.compiler import trace

    return [(bits, bits)] * len(trace(model, tuple(x.shape[1:])).layers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="measure with this many threads only")
    ap.add_argument("--repeat", type=int, default=6)
    args = ap.parse_args()
    if args.threads is not None:
        measure(args.threads, args.repeat)
    else:
        run_per_thread_setting(__file__, ["--repeat", str(args.repeat)])


if __name__ == "__main__":
    main()
