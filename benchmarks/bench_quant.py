"""Quantization and hardware-accurate inference on the embedded digits dataset.

    python benchmarks/bench_quant.py [--seeds 3] [--threads 1]

Prints markdown: (1) lenet float / W8A8 / W4A4 test accuracy per seed with the
training time, (2) the time of one ``evaluate_policy`` call, (3) hardware-accurate
test accuracy on the ``demo`` architecture over ADC bits 3..8 and conductance
variation 0..10 %, with the time of one evaluation of the test set.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cimdse import arch as arch_mod  # noqa: E402
from cimdse import models  # noqa: E402
from cimdse.data import load_dataset  # noqa: E402
from cimdse.quant.hardware import evaluate_hardware  # noqa: E402
from cimdse.quant.train import accuracy, evaluate_policy, finetune, pretrain, quantize_for  # noqa: E402

ADC_BITS = (3, 4, 5, 6, 7, 8)
SIGMAS = (0.0, 0.02, 0.05, 0.10)


def train_table(seeds: int) -> tuple[dict, torch.nn.Module]:
    splits = load_dataset("digits")
    print("## lenet on digits (test accuracy, 359 samples)\n")
    print("| seed | float | W8A8 QAT | W8A8 - float (pp) | W4A4 QAT | float + W4A4 train (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    results: dict = {"float": [], "w8": [], "w4": [], "t": []}
    keep = {}
    for seed in range(seeds):
        t0 = time.perf_counter()
        model = pretrain(models.build("lenet", seed=seed), splits, seed=seed)
        t_float = time.perf_counter() - t0
        f = accuracy(model, splits.test)
        accs = {}
        for bits in (8, 4):
            t1 = time.perf_counter()
            q = finetune(quantize_for(model, [(bits, bits)] * 4, splits, seed=seed), splits, seed=seed)
            accs[bits] = (accuracy(q, splits.test), time.perf_counter() - t1)
            keep[(seed, bits)] = q
        t_total = t_float + accs[4][1]
        for key, val in (("float", f), ("w8", accs[8][0]), ("w4", accs[4][0]), ("t", t_total)):
            results[key].append(val)
        print(
            f"| {seed} | {100 * f:.2f} | {100 * accs[8][0]:.2f} | {100 * (accs[8][0] - f):+.2f} "
            f"| {100 * accs[4][0]:.2f} | {t_total:.1f} |"
        )
    mean = {k: statistics.mean(v) for k, v in results.items()}
    print(
        f"| mean | {100 * mean['float']:.2f} | {100 * mean['w8']:.2f} | {100 * (mean['w8'] - mean['float']):+.2f} "
        f"| {100 * mean['w4']:.2f} | {mean['t']:.1f} |\n"
    )
    return keep, model


def policy_timing(model: torch.nn.Module) -> None:
    splits = load_dataset("digits")
    t0 = time.perf_counter()
    evaluate_policy(model, [(8, 8)] * 4, splits)
    first = time.perf_counter() - t0
    rng = random.Random(0)
    policies = [[(rng.randint(2, 8), rng.randint(2, 8)) for _ in range(4)] for _ in range(100)]
    t0 = time.perf_counter()
    for p in policies:
        evaluate_policy(model, p, splits)
    per = (time.perf_counter() - t0) / len(policies)
    t0 = time.perf_counter()
    evaluate_policy(model, [(4, 4)] * 4, splits, finetune_epochs=1)
    ft = time.perf_counter() - t0
    print("## evaluate_policy (lenet, digits val set, 360 samples)\n")
    print(f"- first call (BN folding, tracing, calibration on 256 training images): {1000 * first:.0f} ms")
    print(f"- each further call, 100 random policies in 2..8 bits: {1000 * per:.1f} ms")
    print(f"- with `finetune_epochs=1`: {1000 * ft:.0f} ms\n")


def hardware_table(qmodels: dict, seed: int = 0) -> None:
    test = load_dataset("digits").test
    for bits in (4, 8):
        q = qmodels[(seed, bits)]
        ideal = arch_mod.load("demo", ["crossbar.adc_bits=null", "crossbar.adc_mode=ideal"])
        t0 = time.perf_counter()
        base = evaluate_hardware(q, test, ideal)
        t_ideal = time.perf_counter() - t0
        print(f"## Hardware-accurate accuracy, W{bits}A{bits} lenet (seed {seed}), demo architecture\n")
        print(
            f"Exact fake-quant: {100 * base.fake_quant:.2f} %; ideal ADC on the crossbar model: "
            f"{100 * base.hardware:.2f} % (agreement {100 * base.agreement:.1f} % of samples, "
            f"{t_ideal:.2f} s for both runs).\n"
        )
        head = [f"full range, sigma {100 * s:.0f} %" for s in SIGMAS] + ["clip, sigma 0 %", "clip, sigma 5 %"]
        print("| ADC bits | " + " | ".join(head) + " |")
        print("|---:|" + "---:|" * len(head))
        times = []
        for adc in ADC_BITS:
            cells = []
            for mode, sigma in [("full_range", sg) for sg in SIGMAS] + [("clip", 0.0), ("clip", 0.05)]:
                overrides = [f"crossbar.adc_bits={adc}", f"crossbar.adc_mode={mode}"]
                spec = arch_mod.load("demo", [*overrides, f"crossbar.nonideal.conductance_sigma={sigma}"])
                t0 = time.perf_counter()
                res = evaluate_hardware(q, test, spec)
                times.append(time.perf_counter() - t0)
                cells.append(f"{100 * res.hardware:.2f}")
            print(f"| {adc} | " + " | ".join(cells) + " |")
        print(
            f"\nOne evaluation of the 359 test images (exact fake-quant + crossbar model): "
            f"median {statistics.median(times):.2f} s, max {max(times):.2f} s.\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s)\n")
    qmodels, model = train_table(args.seeds)
    policy_timing(model)
    hardware_table(qmodels)


if __name__ == "__main__":
    main()
