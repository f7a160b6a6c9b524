"""Search benchmark: the default search (lenet, digits, demo) timed end to end, then
three seeds on demo and cim-aq comparing PPO with random search at the same number
of evaluations, and the chosen best policy's speedup and test-accuracy loss (chosen
on validation after the final fine-tune of each method's top policies).

    python benchmarks/bench_search.py [--out runs/bench_search] [--seeds 0 1 2] [--episodes 300]
        [--finetune-epochs N] [--finetune-within PP]

Writes OUT/bench_search.csv (a row per seed, arch and method) and prints the
Markdown tables of benchmarks/RESULTS.md (search section).
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
from cimdse.search import SearchConfig, run_search  # noqa: E402


def _markdown(df: pd.DataFrame) -> str:
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in df.itertuples(index=False)]
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=SearchConfig().episodes)
    ap.add_argument("--archs", nargs="+", default=["demo", "cim-aq"])
    ap.add_argument("--finetune-epochs", type=int, default=SearchConfig().finetune_epochs)
    ap.add_argument("--finetune-within", type=float, default=SearchConfig().finetune_within_pp)
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    settings = {
        "episodes": args.episodes,
        "finetune_epochs": args.finetune_epochs,
        "finetune_within_pp": args.finetune_within,
    }

    # 1. the default search, as `cimdse search --out DIR` runs it (fresh: pre-training included)
    default_dir = out / "default"
    (default_dir / "float_model.pt").unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = run_search(SearchConfig(**settings), [arch.load("demo")], default_dir)
    wall = time.perf_counter() - t0
    print(f"## Default search (lenet, digits, demo, seed 0): {wall:.1f} s wall\n")
    print("| phase | seconds |\n|---|---|")
    for k, v in res.timings.items():
        print(f"| {k.removesuffix('_s')} | {v:.1f} |")
    print()
    print(_markdown(res.summary))
    print()

    # 2. seeds x archs: PPO vs random at the same budget; best policy per arch
    rows, chosen = [], []
    for seed in args.seeds:
        cfg = SearchConfig(**settings, seed=seed)
        t0 = time.perf_counter()
        r = run_search(cfg, [arch.load(a) for a in args.archs], out / f"seed{seed}")
        seconds = time.perf_counter() - t0
        h = r.history
        for (a, m), g in h.groupby(["arch", "method"], sort=False):
            srow = r.summary[(r.summary.arch == a) & (r.summary.method == m)].iloc[0]
            rows.append(
                {
                    "seed": seed,
                    "arch": a,
                    "method": m,
                    "best_reward": g.reward.max(),
                    "evaluations": len(g),
                    "rank": srow["rank"],
                    "speedup_vs_w8a8": srow.speedup_vs_w8a8,
                    "val_acc": srow.val_acc,
                    "final_val_acc": srow.final_val_acc,
                    "within_bound": srow.within_bound,
                    "test_acc": srow.test_acc,
                    "acc_drop_pp": srow.acc_drop_pp,
                    "run_seconds": seconds,
                }
            )
        for a, b in r.best.items():
            chosen.append({"seed": seed, "arch": a, **{k: v for k, v in b.items() if k != "policy"}})
        print(f"seed {seed}: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in r.timings.items()))
    df = pd.DataFrame(rows)
    df.to_csv(out / "bench_search.csv", index=False)
    pd.DataFrame(chosen).to_csv(out / "bench_search_best.csv", index=False)
    print("## PPO vs random search, best reward at the same number of evaluations\n")
    print("| arch | method | evaluations | best reward per seed | mean | std |\n|---|---|---|---|---|---|")
    for (a, m), g in df[df.method.isin(["ppo", "random", "greedy"])].groupby(["arch", "method"], sort=False):
        per = ", ".join(f"{v:.1f}" for v in g.best_reward)
        mean, std = g.best_reward.mean(), g.best_reward.std()
        print(f"| {a} | {m} | {int(g.evaluations.iloc[0])} | {per} | {mean:.1f} | {std:.1f} |")
    print()
    print("## Chosen best policy per seed and arch (on validation, after the final fine-tune)\n")
    print(
        "| seed | arch | method | reward rank | speedup | fine-tuned val | within bound (val) | test acc "
        "| drop (pp) |\n"
        "|---|---|---|---|---|---|---|---|---|"
    )
    for b in chosen:
        print(
            f"| {b['seed']} | {b['arch']} | {b['method']} | {b['rank']} | {b['speedup_vs_w8a8']:.2f} "
            f"| {b['final_val_acc']:.4f} | {'yes' if b['within_bound'] else 'no'} | {b['test_acc']:.4f} "
            f"| {b['acc_drop_pp']:.2f} |"
        )
    print()
    print("## Each searching method's chosen policy (of its top policies by reward)\n")
    print("| seed | arch | method | reward rank | speedup | fine-tuned val | drop (pp) |")
    print("|---|---|---|---|---|---|---|")
    for _, row in df[df.method.isin(["ppo", "random", "greedy"])].iterrows():
        print(
            f"| {row.seed} | {row.arch} | {row.method} | {row['rank']} | {row.speedup_vs_w8a8:.2f} "
            f"| {row.final_val_acc:.4f} | {row.acc_drop_pp:.2f} |"
        )


if __name__ == "__main__":
    main()
