"""Hardware-accurate accuracy where it is used: in the search and in training.

1. The default search (lenet, digits, demo) with ``accuracy="hardware"`` (every
   policy measured on the crossbar model, torch backend) against the same search with
   fake quantization, in one process, the second from the first's pre-trained float
   model (pre-training excluded from both times); the ratio is the figure.
2. ADC-aware training: lenet W4A4 on digits, the demo tile with a full-range ADC at 6
   and 5 bits; plain QAT vs ADC-aware QAT (``finetune(..., hardware=arch)``) from the
   same calibrated model, 15 epochs each; hardware test accuracy on that ADC and the
   fake-quant test accuracy.

    python benchmarks/bench_hardware.py [--out runs/bench_hardware] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import device_label  # noqa: E402

from cimdse import arch, models  # noqa: E402
from cimdse.data import load_dataset  # noqa: E402
from cimdse.quant.hardware import evaluate_hardware  # noqa: E402
from cimdse.quant.train import QAT_EPOCHS, finetune, pretrain, quantize_for  # noqa: E402
from cimdse.search import SearchConfig, run_search  # noqa: E402


def search_times(out: Path, settings: dict | None = None) -> None:
    """``settings``: SearchConfig fields (dataset, episodes, methods, ...) for a scaled
    search; default: the default search."""
    settings = settings or {}
    times, res = {}, {}
    fq_dir = out / "fake-quant"
    (fq_dir / "float_model.pt").unlink(missing_ok=True)
    for acc in ("fake-quant", "hardware"):
        from_ckpt = None if acc == "fake-quant" else str(fq_dir / "float_model.pt")  # the same float model
        t0 = time.perf_counter()
        config = SearchConfig(accuracy=acc, **settings)
        res[acc] = run_search(config, [arch.load("demo")], out / acc, from_ckpt=from_ckpt)
        times[acc] = time.perf_counter() - t0 - res[acc].timings.get("pretrain_s", 0.0)
    what = ", ".join(f"{k}={v}" for k, v in settings.items()) or "lenet, digits"
    print(f"## Search ({what}; demo, seed 0), pre-training excluded; {device_label('cpu')}\n")
    keys = list(res["hardware"].timings)
    print("| accuracy | wall without pre-training (s) | " + " | ".join(k.removesuffix("_s") for k in keys) + " |")
    print("|---|---:|" + "---:|" * len(keys))
    for acc in times:
        cells = " | ".join(f"{res[acc].timings.get(k, float('nan')):.1f}" for k in keys)
        print(f"| {acc} | {times[acc]:.1f} | {cells} |")
    print(f"\nhardware / fake-quant: {times['hardware'] / times['fake-quant']:.2f}x (target <= 1.5x)\n")


def adc_aware_table(bits_list: tuple[int, ...], epochs: int) -> None:
    splits = load_dataset("digits")
    model = pretrain(models.build("lenet", seed=0), splits, seed=0)
    print(f"## ADC-aware QAT: lenet W4A4 on digits, demo tile, full-range ADC ({epochs} QAT epochs, seed 0)\n")
    print(
        "| ADC bits | plain QAT: fake quant | plain QAT: hardware | ADC-aware: fake quant | ADC-aware: hardware "
        "| hardware gain (pp) | ADC-aware - plain fake quant (pp) | ADC-aware train (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bits in bits_list:
        spec = arch.load("demo", [f"crossbar.adc_bits={bits}", "crossbar.adc_mode=full_range"])
        results = {}
        for mode in ("plain", "aware"):
            q = quantize_for(copy.deepcopy(model), [(4, 4)] * 4, splits, seed=0)
            t0 = time.perf_counter()
            finetune(q, splits, epochs, 0, hardware=spec if mode == "aware" else None)
            seconds = time.perf_counter() - t0
            r = evaluate_hardware(q, splits.test, spec)
            results[mode] = (r.fake_quant, r.hardware, seconds)
        p, a = results["plain"], results["aware"]
        print(
            f"| {bits} | {100 * p[0]:.2f} | {100 * p[1]:.2f} | {100 * a[0]:.2f} | {100 * a[1]:.2f} "
            f"| {100 * (a[1] - p[1]):+.2f} | {100 * (a[1] - p[0]):+.2f} | {a[2]:.1f} |"
        )
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_hardware")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--parts", nargs="+", default=["search", "training"], choices=["search", "training"])
    ap.add_argument("--adc-bits", type=int, nargs="+", default=[6, 5])
    ap.add_argument("--epochs", type=int, default=QAT_EPOCHS)
    ap.add_argument("--dataset", default=None, help="search: this dataset (its default model) instead of digits")
    ap.add_argument("--episodes", type=int, default=None, help="search: evaluations per method")
    ap.add_argument("--methods", default=None, help="search: comma-separated methods")
    ap.add_argument("--final-epochs", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"(torch threads: {args.threads})\n")
    if "search" in args.parts:
        settings = {"dataset": args.dataset, "episodes": args.episodes, "final_epochs": args.final_epochs}
        settings = {k: v for k, v in settings.items() if v is not None}
        if args.methods:
            settings["methods"] = tuple(args.methods.split(","))
        search_times(out, settings)
    if "training" in args.parts:
        adc_aware_table(tuple(args.adc_bits), args.epochs)


if __name__ == "__main__":
    main()
