"""Float32 fake quantization against the exact integer model, on trained networks.

    python benchmarks/bench_accuracy_exact.py [--threads 1] [--repeat 7]

(1) Disagreement: for lenet on digits, cnn1d on MNIST-1D and resnet20 on
random-labelled 3x16x16 images (each trained briefly, then quantized and calibrated;
lenet and cnn1d also after a QAT epoch), the activation codes of every crossbar layer
that differ between the float32 fake-quant forward and the integer model
(``cimdse.quant.exact``; the crossbar model with an ideal ADC gives the same logits),
the predictions that differ, and both accuracies on the test split.

(2) Cost: the time of one validation-split evaluation, fake quant (``accuracy`` of the
quantized model, at the former batch of 1,024 and at the batch of 256 used now)
against exact (``exact_accuracy``: integer model, its product in float32 where the
bound proves it exact) and against the integer model with a float64 product (what the
integer model cost before), and one search evaluation before (quantize at a policy,
fake quant) and now (quantize, exact on the quantized model in place, as the search
does), best of ``--repeat`` after a warm-up, the variants interleaved, CPU time of
this process (the machine is shared) with wall time beside it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from timing import thread_label  # noqa: E402

from cimdse import models  # noqa: E402
from cimdse.data import Splits, load_dataset, make_splits, stratified_split  # noqa: E402
from cimdse.quant.apply import PreparedModel, quant_layers  # noqa: E402
from cimdse.quant.exact import accuracy, exact_accuracy  # noqa: E402
from cimdse.quant.export import FLOAT32_EXACT, act_integers, export_model, product_bound  # noqa: E402
from cimdse.quant.hardware import integer_model  # noqa: E402
from cimdse.quant.quantizers import MIN_SCALE  # noqa: E402
from cimdse.quant.train import calibration_inputs, finetune, pretrain  # noqa: E402


def random_images(n: int = 1500, shape: tuple[int, ...] = (3, 16, 16), seed: int = 0) -> Splits:
    """Random images with random labels (10 classes): a trained-like resnet20 without a
    dataset on disk (it memorizes part of the training split)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    y = rng.integers(0, 10, n)
    return make_splits("random", x, y, stratified_split(y, (0.6, 0.2, 0.2), seed), 10)


@torch.no_grad()
def codes(model: torch.nn.Module, x: torch.Tensor, exact: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Every crossbar layer's input codes and the logits, from the fake-quant model or
    its integer model."""
    run = integer_model(model) if exact else model.eval()
    found: dict[str, torch.Tensor] = {}

    def hook(name: str, q) -> Callable:
        def pre(mod, inp) -> None:
            if exact:
                found[name] = act_integers(q.frozen, inp[0])
            else:  # the code fake quant used: its output / scale, rounded
                found[name] = torch.round(q.act_q(inp[0]) / q.act_q.scale.clamp_min(MIN_SCALE)).double()

        return pre

    qls = quant_layers(run.model if exact else run)
    handles = [q.register_forward_pre_hook(hook(n, q)) for n, q in qls.items()]
    try:
        logits = run(x)
    finally:
        for h in handles:
            h.remove()
    return found, logits


def disagreement(label: str, qmodel: torch.nn.Module, splits: Splits) -> None:
    x, y = splits.test.tensors
    fq_codes, fq_logits = codes(qmodel, x, exact=False)
    ex_codes, ex_logits = codes(qmodel, x, exact=True)
    per_layer = []
    for name in ex_codes:
        diff = int((fq_codes[name] != ex_codes[name]).sum())
        per_layer.append(f"{name} {diff}/{ex_codes[name].numel()}" if diff else None)
    first = next((p for p in per_layer if p), "none")
    total = sum(int((fq_codes[n] != ex_codes[n]).sum()) for n in ex_codes)
    last = list(ex_codes)[-1]
    last_diff = int((fq_codes[last] != ex_codes[last]).sum())
    fq_pred, ex_pred = fq_logits.argmax(1), ex_logits.argmax(1)
    fq_acc, ex_acc = int((fq_pred == y).sum()) / len(y), int((ex_pred == y).sum()) / len(y)
    assert ex_acc == exact_accuracy(qmodel, splits.test)
    print(
        f"| {label} | {total} / {sum(c.numel() for c in ex_codes.values())} | {first} | "
        f"{last_diff} / {ex_codes[last].numel()} | {int((fq_pred != ex_pred).sum())} / {len(y)} | "
        f"{100 * fq_acc:.2f} | {100 * ex_acc:.2f} | {100 * (ex_acc - fq_acc):+.2f} |"
    )


def float64_product(layer, x_int: torch.Tensor) -> torch.Tensor:
    """The integer product as it was computed before: a float64 convolution."""
    w = layer.weight_tensor()
    if layer.kind == "linear":
        return F.linear(x_int, w)
    op = F.conv1d if layer.kind == "conv1d" else F.conv2d
    return op(x_int, w, None, layer.stride, layer.padding, layer.dilation, layer.groups)


def exact_float64(qmodel: torch.nn.Module) -> torch.nn.Module:
    model = integer_model(qmodel)
    for q in quant_layers(model.model).values():
        q.backend = float64_product
    return model


def best(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, tuple[float, float]]:
    """Best CPU and wall time of each function, interleaved, after one warm-up each."""
    for fn in fns.values():
        fn()
    cpu = {k: float("inf") for k in fns}
    wall = dict(cpu)
    for _ in range(repeat):
        for k, fn in fns.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            cpu[k] = min(cpu[k], time.process_time() - c0)
            wall[k] = min(wall[k], time.perf_counter() - t0)
    return {k: (cpu[k], wall[k]) for k in fns}


def cost(label: str, prepared: PreparedModel, policy, splits: Splits, repeat: int) -> None:
    q = prepared.quantize(policy)
    val = splits.val
    layers = export_model(q)
    fast = sum(product_bound(layer) <= FLOAT32_EXACT for layer in layers.values())
    sliced = sum(product_bound(layer) > FLOAT32_EXACT >= product_bound(layer, sliced=True) for layer in layers.values())
    t = best(
        {
            "fq_old": lambda: accuracy(q, val, batch_size=1024),
            "fq": lambda: accuracy(q, val),
            "exact": lambda: exact_accuracy(q, val),
            "f64": lambda: accuracy(exact_float64(q), val),
            "search_fq": lambda: accuracy(prepared.quantize(policy), val, batch_size=1024),
            "search_exact": lambda: exact_accuracy(prepared.quantize(policy), val, in_place=True),
        },
        repeat,
    )
    ms = {k: f"{1e3 * c:.1f} ({1e3 * w:.1f})" for k, (c, w) in t.items()}
    print(
        f"| {label} | {len(val)} | {fast}+{sliced}/{len(layers)} | {ms['fq_old']} | {ms['fq']} | {ms['exact']} | "
        f"{ms['f64']} | {t['exact'][0] / t['fq'][0]:.2f}x | {t['f64'][0] / t['fq'][0]:.2f}x | "
        f"{ms['search_fq']} | {ms['search_exact']} | {t['search_exact'][0] / t['search_fq'][0]:.2f}x |"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"{thread_label(args.threads)}\n")

    nets = []
    t0 = time.perf_counter()
    digits = load_dataset("digits")
    lenet = pretrain(models.build("lenet", seed=0), digits, epochs=20, seed=0)
    nets.append(("lenet", digits, lenet, [(8, 8), (4, 4), (2, 4)], 4))
    mnist1d = load_dataset("mnist1d")
    cnn1d = pretrain(models.build("cnn1d", seed=0), mnist1d, epochs=6, seed=0)
    nets.append(("cnn1d", mnist1d, cnn1d, [(8, 8), (4, 4)], 9))
    rand = random_images()
    resnet = pretrain(models.build("resnet20", seed=0), rand, epochs=4, seed=0)
    nets.append(("resnet20 (random 3x16x16)", rand, resnet, [(8, 8), (4, 4)], 22))
    print(f"pre-training: {time.perf_counter() - t0:.0f} s wall\n")

    print("## Disagreement, test split: float32 fake quant vs the integer model\n")
    print(
        "| network, policy | codes differing (all layers) | first layer with a difference | "
        "codes differing, last layer | predictions differing | fake-quant acc % | exact acc % | exact - fq (pp) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    prepared = {}
    for name, splits, model, policies, n in nets:
        prepared[name] = PreparedModel(model, calibration_inputs(splits))
        for w, a in policies:
            q = prepared[name].quantize([(w, a)] * n)
            disagreement(f"{name} W{w}A{a}", q, splits)
        if name != nets[-1][0]:
            w, a = policies[1]
            q = finetune(prepared[name].quantize([(w, a)] * n), splits, 1, seed=0)
            disagreement(f"{name} W{w}A{a} + 1 QAT epoch", q, splits)

    print(f"\n## Cost of one validation-split evaluation, ms CPU (wall), best of {args.repeat}\n")
    print(
        "| network | val samples | float32 + sliced product layers | fake quant, batch 1024 (before) | fake quant "
        "| exact | exact, float64 product | exact / fq | f64 / fq | search eval before: quantize + fq 1024 "
        "| search eval now: quantize + exact | now / before |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, splits, _, _, n in nets:
        for bits in (8, 4):
            cost(f"{name} W{bits}A{bits}", prepared[name], [(bits, bits)] * n, splits, args.repeat)


if __name__ == "__main__":
    main()
