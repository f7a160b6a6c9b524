"""Search benchmark with resolution: MNIST-1D (4,000 test, 2,000 validation signals)
and the 9-crossbar-layer ``cnn1d``; every method (PPO, TPE, sensitivity+ILP, random,
greedy) at the same budget of distinct evaluations, on the demo and cim-aq presets,
over seeds; fronts and hypervolume per method, mean and spread over seeds, and the
chosen policy per arch against the targets.

    python benchmarks/bench_search_fronts.py [--out runs/bench_fronts] [--seeds 0 1 2]
        [--episodes 200] [--final-top-k 2] [--final-epochs 4] [--max-acc-drop 0.3]
        [--methods ppo,tpe,ilp,random,greedy] [--from CKPT]

One float model (pre-trained with seed 0, the dataset default's epochs, cached in
OUT/float_model.pt or given with --from) serves every seed, so the seeds vary the
searches, not the network. Each seed runs both archs in one search (the fake-quant
accuracy cache is shared by archs and methods). Writes OUT/seed<N>/ (the search
outputs), OUT/compare.csv and prints the Markdown tables of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from cimdse import arch  # noqa: E402
from cimdse.search.compare import compare_runs  # noqa: E402
from cimdse.search.config import SearchConfig  # noqa: E402
from cimdse.search.run import run_search  # noqa: E402

TARGETS = {"demo": (3.0, 0.3), "cim-aq": (2.5, 0.5)}  # speedup at least, test drop (pp) at most


def _markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v: object) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_fronts")
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=None)
    ap.add_argument("--final-top-k", type=int, default=None)
    ap.add_argument("--final-epochs", type=int, default=None)
    ap.add_argument("--max-acc-drop", type=float, default=0.3)
    ap.add_argument("--methods", default="ppo,tpe,ilp,random,greedy")
    ap.add_argument("--archs", nargs="+", default=["demo", "cim-aq"])
    ap.add_argument("--from", dest="from_ckpt", default=None, help="float checkpoint (else pre-trained once here)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    settings = {
        "dataset": args.dataset,
        "episodes": args.episodes,
        "final_top_k": args.final_top_k,
        "final_epochs": args.final_epochs,
        "max_acc_drop": args.max_acc_drop,
        "methods": tuple(m for m in args.methods.split(",") if m),
    }
    archs = [arch.load(a) for a in args.archs]
    ckpt = args.from_ckpt
    if ckpt is None:  # pre-train once (a search with no method writes OUT/float/float_model.pt)
        float_dir = out / "float"
        run_search(SearchConfig(**{**settings, "methods": (), "final_top_k": 1, "final_epochs": 0}), archs[:1],
                   float_dir)  # fmt: skip
        ckpt = str(float_dir / "float_model.pt")
    cfg0 = SearchConfig(**settings)
    print(
        f"# {cfg0.dataset}, {cfg0.model}: {cfg0.episodes} evaluations per method, bound {cfg0.max_acc_drop} pp, "
        f"final fine-tune of the top {cfg0.final_top_k} for {cfg0.final_epochs} epochs; seeds {args.seeds}; "
        f"torch threads {args.threads}\n"
    )
    runs, chosen = [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        res = run_search(SearchConfig(**settings, seed=seed), archs, out / f"seed{seed}", from_ckpt=ckpt)
        wall = time.perf_counter() - t0
        runs.append(out / f"seed{seed}")
        for label, b in res.best.items():
            chosen.append({"seed": seed, "arch": label, **{k: v for k, v in b.items() if k != "policy"}})
        print(f"seed {seed}: {wall:.0f} s wall; " + ", ".join(f"{k[:-2]} {v:.0f}" for k, v in res.timings.items()))
    table = compare_runs(runs)
    table.to_csv(out / "compare.csv", index=False)
    print("\n## Hypervolume per method over seeds (speedup x pp above (1.0, bound))\n")
    cols = ["arch", "method", "runs", "evaluations", "hypervolume_mean", "hypervolume_std", "hypervolume_min"]
    cols += ["hypervolume_max", "hypervolume_vs_best", "speedup_mean", "acc_drop_pp_mean", "within_bound_share"]
    searching = table[~table.method.str.startswith("uniform")]
    print(_markdown(searching[cols]))
    print("\n## Chosen policy per seed and arch (validation after the final fine-tune; test only reported)\n")
    best = pd.DataFrame(chosen)
    best.to_csv(out / "chosen.csv", index=False)
    bcols = ["seed", "arch", "method", "speedup_vs_w8a8", "final_val_acc", "within_bound", "test_acc", "acc_drop_pp"]
    print(_markdown(best[bcols], 4))
    print("\n## Targets\n")
    for label, g in best.groupby("arch", sort=False):
        need_s, need_d = TARGETS.get(label, (float("nan"), float("nan")))
        met = ((g.speedup_vs_w8a8 >= need_s) & (g.acc_drop_pp <= need_d)).sum()
        print(f"- {label}: >= {need_s}x with <= {need_d} pp test loss on {met} of {len(g)} seeds")
    for label, g in searching.groupby("arch", sort=False):
        default = g[g.method == "ppo"]
        if default.empty:
            continue
        top = g.loc[g.hypervolume_mean.idxmax()]
        print(
            f"- {label}: PPO mean hypervolume {default.hypervolume_mean.iloc[0]:.2f} vs best {top.method} "
            f"{top.hypervolume_mean:.2f} ({100 * default.hypervolume_vs_best.iloc[0]:.0f} % of it)"
        )


if __name__ == "__main__":
    main()
