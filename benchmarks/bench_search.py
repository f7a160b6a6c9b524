"""Search benchmark: the default search (lenet, digits, demo) timed end to end, then
three seeds on demo and cim-aq comparing PPO with random search at the same number
of evaluations, and the best policy's speedup and test-accuracy loss.

    python benchmarks/bench_search.py [--out runs/bench_search] [--seeds 0 1 2] [--episodes 300]

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
from cimdse.search.run import SearchConfig, run_search  # noqa: E402


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
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)

    # 1. the default search, as `cimdse search --out DIR` runs it (fresh: pre-training included)
    default_dir = out / "default"
    (default_dir / "float_model.pt").unlink(missing_ok=True)
    t0 = time.perf_counter()
    res = run_search(SearchConfig(episodes=args.episodes), [arch.load("demo")], default_dir)
    wall = time.perf_counter() - t0
    print(f"## Default search (lenet, digits, demo, seed 0): {wall:.1f} s wall\n")
    print("| phase | seconds |\n|---|---|")
    for k, v in res.timings.items():
        print(f"| {k.removesuffix('_s')} | {v:.1f} |")
    print()
    print(_markdown(res.summary))
    print()

    # 2. seeds x archs: PPO vs random at the same budget; best policy per arch
    rows = []
    for seed in args.seeds:
        cfg = SearchConfig(episodes=args.episodes, seed=seed)
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
                    "speedup_vs_w8a8": srow.speedup_vs_w8a8,
                    "val_acc": srow.val_acc,
                    "test_acc": srow.test_acc,
                    "acc_drop_pp": srow.acc_drop_pp,
                    "run_seconds": seconds,
                }
            )
    df = pd.DataFrame(rows)
    df.to_csv(out / "bench_search.csv", index=False)
    print("## PPO vs random search, best reward at the same number of evaluations\n")
    print("| arch | method | evaluations | best reward per seed | mean | std |\n|---|---|---|---|---|---|")
    for (a, m), g in df[df.method.isin(["ppo", "random", "greedy"])].groupby(["arch", "method"], sort=False):
        per = ", ".join(f"{v:.1f}" for v in g.best_reward)
        mean, std = g.best_reward.mean(), g.best_reward.std()
        print(f"| {a} | {m} | {int(g.evaluations.iloc[0])} | {per} | {mean:.1f} | {std:.1f} |")
    print()
    print("## Best policy per seed and arch (highest reward over all methods), after the final fine-tune\n")
    print("| seed | arch | method | speedup | test acc | drop (pp) |\n|---|---|---|---|---|---|")
    for (seed, a), g in df.groupby(["seed", "arch"], sort=False):
        best = g.loc[g.best_reward.idxmax()]
        print(
            f"| {seed} | {a} | {best.method} | {best.speedup_vs_w8a8:.2f} | {best.test_acc:.4f} "
            f"| {best.acc_drop_pp:.2f} |"
        )
    print()
    print("## Highest speedup within 0.5 pp test loss after fine-tuning, any method\n")
    print("| seed | arch | method | speedup | drop (pp) |\n|---|---|---|---|---|")
    for (seed, a), g in df.groupby(["seed", "arch"], sort=False):
        ok = g[g.acc_drop_pp <= 0.5 + 1e-9]
        best = ok.loc[ok.speedup_vs_w8a8.idxmax()]
        print(f"| {seed} | {a} | {best.method} | {best.speedup_vs_w8a8:.2f} | {best.acc_drop_pp:.2f} |")


if __name__ == "__main__":
    main()
