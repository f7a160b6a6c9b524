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
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosssim_config import add_crosssim_path, crosssim_params  # noqa: E402
from timing import best_of, device_label, run_per_thread_setting, thread_label  # noqa: E402

ROWS = 64
ENV_KERNEL = "CIMDSE_GEMM"  # cimdse.crossbar_torch.ENV_KERNEL (not imported before the thread setting)
CASES = {"lenet": (256, 256), "resnet20": (64, 16), "resnet50": (4, 1)}  # batch, batch of the slow references


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else None


def slice_floor(qmodel, x, arch, best, device: str = "cpu") -> float:
    """Sum over crossbar layers of that layer's slice GEMMs: on CPU slices x the
    layer's float32 GEMM time ([B*L, K] @ [K, N], the faster of numpy and torch); on
    CUDA one int8 GEMM [slices * B*L, K] @ [K, weight slices * polarities * N]."""
    import numpy as np
    import torch

    from cimdse import crossbar_torch as ct
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
        nx, nw, p = input_slices(spec, layer.a_bits), cells_per_weight(spec, layer.w_bits), polarities(spec)
        if device.startswith("cuda"):
            k8, n8 = -(-layer.k // 8) * 8, -(-n * nw * p // 8) * 8  # cuBLASLt's shape rules, no copies in the timing
            a = torch.randint(0, 2, (m * nx, k8), dtype=torch.int8, device=device)
            w = ct.column_major(torch.randint(0, 4, (k8, n8), dtype=torch.int8, device=device))
            total += best(lambda a=a, w=w: ct.int_mm(a, w)) * layer.groups
            continue
        a, w = torch.rand(m, layer.k), torch.rand(layer.k, n)
        an, wn = a.numpy(), w.numpy()
        t = min(best(lambda a=a, w=w: a @ w), best(lambda an=an, wn=wn: an @ wn)) * layer.groups
        total += t * nx * nw * p
    return total


def measure(
    threads: int,
    repeat: int,
    device: str = "cpu",
    cases: list[str] | None = None,
    numpy_ref: bool = True,
    batches: dict[str, int] | None = None,
    crosssim_cases: list[str] | None = None,
) -> None:
    import torch

    from cimdse import arch as arch_mod

    torch.set_num_threads(threads)
    arch = arch_mod.load("demo", ["crossbar.adc_mode=full_range"])  # 64x64, 2-bit cells, 1-bit DAC, 6-bit ADC
    from_torch = None
    if add_crosssim_path():
        from simulator.algorithms.dnn.torch.convert import from_torch
    print(f"\n## {thread_label(threads)}")
    print(device_label(device))
    print(
        "| network | batch | crossbar model, torch (img/s) | ms/image | numpy reference (img/s) | CrossSim MAX (img/s) "
        "| CrossSim GRANULAR (img/s) | torch / CrossSim MAX | torch / CrossSim GRANULAR | slice floor (img/s) "
        "| time / slice floor | fake quant (img/s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    cases = cases or ["lenet", "resnet20"]
    for name in cases:
        batch, slow_batch = CASES[name]
        if batches and name in batches:
            batch = batches[name]
            # on CUDA CrossSim runs the whole batch, except ResNet-50 (seconds per image there)
            slow_batch = batch if device.startswith("cuda") and name != "resnet50" else min(slow_batch, batch)
        try:
            cs = from_torch if crosssim_cases is None or name in crosssim_cases else None
            print(_case(name, batch, slow_batch, arch, repeat, cs, device, numpy_ref), flush=True)
        except Exception as err:  # noqa: BLE001  # one failing network must not hide the others' figures
            print(f"| {name} | {batch} | failed: {type(err).__name__}: {err} |", flush=True)
    for (name, kernel), t in FORCED_TIMES.items():
        batch = batches.get(name, CASES[name][0]) if batches else CASES[name][0]
        print(
            f"{name}: crossbar model with {ENV_KERNEL}={kernel}: {batch / t:,.1f} img/s, "
            f"{1e3 * t / batch:,.2f} ms/image"
        )
    print(
        f"\nbest of {repeat} (numpy reference and CrossSim: best of {max(1, repeat // 3)}, timed on the first "
        "slow-reference batch of images and scaled to images/s)"
    )


def _model(name: str, batch: int):
    import torch

    from cimdse import models
    from cimdse.data import load_dataset

    torch.manual_seed(0)
    if name == "lenet":
        return models.build("lenet", num_classes=10, seed=0), load_dataset("digits").test.tensors[0][:batch]
    if name == "resnet50":
        from resnet50 import resnet50

        return resnet50(), torch.rand(batch, 3, 224, 224)
    return models.build("resnet20", num_classes=10, seed=0), torch.rand(batch, 3, 32, 32)


FORCED: list[str] = []  # kernels also timed, each forced by CIMDSE_GEMM (--kernels)
FORCED_TIMES: dict[tuple[str, str], float] = {}


def _case(name: str, batch: int, slow_batch: int, arch, repeat: int, from_torch, device: str, numpy_ref: bool) -> str:
    """One table row: images/s of every implementation on one network."""
    import copy

    import torch

    from cimdse.quant.apply import quantize
    from cimdse.quant.hardware import integer_model

    model, x = _model(name, batch)
    model.eval()
    q = quantize(model, _uniform(model, x, 8), x[: min(batch, 32)])
    hw = integer_model(q, arch=arch, backend="torch", device=device)
    xs = x[:slow_batch]
    slow_repeat = max(1, repeat // 3)
    sync = _sync(device)
    xd = x.to(device)
    with torch.no_grad():
        t_torch = best_of(lambda: hw(xd), repeat, sync)
        for kernel in FORCED:
            os.environ[ENV_KERNEL] = kernel
            try:
                hwk = integer_model(q, arch=arch, backend="torch", device=device)
                FORCED_TIMES[(name, kernel)] = best_of(lambda hwk=hwk: hwk(xd), max(1, repeat // 2), sync)
            finally:
                os.environ.pop(ENV_KERNEL)
        qd = copy.deepcopy(q).to(device)
        t_fq = best_of(lambda: qd(xd), repeat, sync)
        t_np = None
        if numpy_ref:
            hw_np = integer_model(q, arch=arch, backend="numpy")
            t_np = best_of(lambda: hw_np(xs), slow_repeat) * batch / slow_batch
    floor = slice_floor(qd, xd, arch, lambda fn: best_of(fn, repeat, sync), device)
    cs = {}
    if from_torch is not None:
        gpu = device.startswith("cuda")
        for opt in ("MAX", "GRANULAR"):
            try:
                params = crosssim_params(ROWS, opt, float(x.max()), gpu)
                analog = from_torch(copy.deepcopy(model).to(device), params, fuse_batchnorm=True).eval()
                xsd = xs.to(device)
                with torch.no_grad():
                    cs[opt] = (
                        best_of(lambda analog=analog, xsd=xsd: analog(xsd), slow_repeat, sync) * batch / slow_batch
                    )
            except Exception as err:  # noqa: BLE001  # someone else's simulator: report and go on
                print(f"CrossSim {opt} on {name}: failed ({type(err).__name__}: {err})", flush=True)
    times = {"torch": t_torch, "fq": t_fq, "floor": floor, **cs}
    if t_np is not None:
        times["numpy"] = t_np
    ips = {k: batch / v for k, v in times.items()}

    def fmt(key: str) -> str:
        return f"{ips[key]:,.1f}" if key in ips else "n/a"

    rm = f"{ips['torch'] / ips['MAX']:.2f}x" if "MAX" in ips else "n/a"
    rg = f"{ips['torch'] / ips['GRANULAR']:.2f}x" if "GRANULAR" in ips else "n/a"
    return (
        f"| {name} | {batch} | {ips['torch']:,.1f} | {1e3 * t_torch / batch:,.2f} | {fmt('numpy')} | {fmt('MAX')} "
        f"| {fmt('GRANULAR')} | {rm} | {rg} | {ips['floor']:,.1f} | {t_torch / floor:.2f}x | {ips['fq']:,.1f} |"
    )


def training_step(device: str, batch: int, repeat: int, name: str = "resnet20") -> None:
    """images/s of one QAT training step (forward, backward, Adam) with the crossbar
    model in the forward pass (ADC-aware, ideal devices) against fake quantization."""
    import torch
    import torch.nn.functional as F

    from cimdse import arch as arch_mod
    from cimdse.quant.apply import quantize
    from cimdse.quant.hardware import hardware_aware

    arch = arch_mod.load("demo", ["crossbar.adc_mode=full_range"])
    model, x = _model(name, batch)
    q = quantize(model.eval(), _uniform(model, x, 8), x[:32]).to(device).train()
    xd, y = x.to(device), torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.Adam(q.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        F.cross_entropy(q(xd), y).backward()
        opt.step()

    sync = _sync(device)
    t_fq = best_of(step, repeat, sync)
    hardware_aware(q, arch, nonideal=False)
    t_hw = best_of(step, repeat, sync)
    hardware_aware(q, None)
    print(
        f"training step, {name} batch {batch} on {device}: ADC-aware {batch / t_hw:,.1f} img/s, fake quant "
        f"{batch / t_fq:,.1f} img/s, ratio {t_fq / t_hw:.3f} (target >= 0.1); best of {repeat}",
        flush=True,
    )


def _uniform(model, x, bits: int) -> list[tuple[int, int]]:
    from cimdse.compiler import trace

    return [(bits, bits)] * len(trace(model, tuple(x.shape[1:])).layers)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="measure with this many threads only")
    ap.add_argument("--repeat", type=int, default=6)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--cases", default="lenet,resnet20", help="networks: lenet, resnet20, resnet50")
    ap.add_argument("--batch", action="append", default=[], help="NAME=BATCH, e.g. resnet20=256")
    ap.add_argument("--no-numpy", action="store_true", help="skip the (slow) numpy reference")
    ap.add_argument("--crosssim", default=None, help="networks CrossSim runs on (default: all)")
    ap.add_argument("--kernels", default="", help="also time the crossbar model with each of these kernels forced")
    ap.add_argument("--train-step", type=int, default=0, help="also time a training step at this batch")
    args = ap.parse_args()
    batches = {k: int(v) for k, v in (b.split("=") for b in args.batch)}
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    FORCED.extend(k.strip() for k in args.kernels.split(",") if k.strip())
    if args.threads is not None or args.device != "cpu":
        cs_cases = None if args.crosssim is None else [c.strip() for c in args.crosssim.split(",")]
        measure(args.threads or 1, args.repeat, args.device, cases, not args.no_numpy, batches, cs_cases)
        if args.train_step:
            training_step(args.device, args.train_step, args.repeat)
    else:
        run_per_thread_setting(__file__, sys.argv[1:])


if __name__ == "__main__":
    main()
