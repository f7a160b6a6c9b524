"""Search benchmark with resolution: MNIST-1D (4,000 test, 2,000 validation signals)
and the 9-crossbar-layer ``cnn1d``; every method (PPO, TPE, sensitivity+ILP, random,
greedy) at the same budget of distinct evaluations, on the demo and cim-aq presets,
over seeds; fronts and hypervolume per method, mean and spread over seeds, and the
chosen policy per arch against the targets.

    python benchmarks/bench_search_fronts.py --from CKPT [--out runs/bench_fronts] [--seeds 0 1 2 3 4]
        [--episodes 100] [--final-top-k 1] [--final-epochs 2] [--max-acc-drop 0.3]
        [--methods ppo,tpe,ilp,random,greedy] [--ppo KEY=VALUE ...] [--cache FILE]

CKPT is a float ``cnn1d`` checkpoint (e.g. ``OUT/float_model.pt`` of a
``cimdse search --dataset mnist1d`` run). One float model serves every seed, so the
seeds vary the searches, not the network. The evaluations are deterministic, so one
accuracy cache serves every seed, arch and method (a policy is evaluated once in the
whole benchmark, e.g. greedy's and the ILP's, which do not depend on the seed), and
the final fine-tune uses seed 0 for every search seed (a policy is fine-tuned once),
as ``cimdse search`` itself now does (its ``EVAL_SEED``). ``front_resident_share``: the
share of each method's front points whose weights are resident on the chip (a front
that crosses from re-programmed to resident has a latency cliff in it).
``--cache FILE`` keeps both caches on disk (a JSON file this script writes), so a later
run with other PPO settings on the same checkpoint evaluates only its new policies.
Each seed's search writes its usual files to OUT/seed<N>/; OUT/compare.csv holds the
comparison; the Markdown tables of benchmarks/RESULTS.md are printed, with the CPU
seconds of this process (the machine is shared: wall time says little) and the CPU
cost per evaluation and per fine-tune epoch, from which the default search's cost
is worked out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import astuple
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout, not an installed copy

from cimdse import arch  # noqa: E402
from cimdse.cli.search_cmd import _ppo_config  # noqa: E402
from cimdse.files import atomic_write  # noqa: E402
from cimdse.policy import policy_key  # noqa: E402
from cimdse.quant.checkpoint import load_checkpoint  # noqa: E402
from cimdse.search.accuracy import QATAccuracy, final_scores  # noqa: E402
from cimdse.search.compare import compare_runs  # noqa: E402
from cimdse.search.config import SearchConfig  # noqa: E402
from cimdse.search.core import search_archs  # noqa: E402
from cimdse.search.finals import FinalScores  # noqa: E402
from cimdse.search.run import prepare, write_results  # noqa: E402

TARGETS = {"demo": (3.0, 0.3), "cim-aq": (2.5, 0.5)}  # speedup at least, test drop (pp) at most


class Memo:
    """A deterministic evaluator's results, kept across searches; counts fresh calls and their CPU time."""

    def __init__(self, fn) -> None:
        self.fn, self.cache, self.fresh, self.cpu = fn, {}, 0, 0.0

    def __call__(self, *args):
        key = policy_key(args[0])
        if key not in self.cache:
            t0 = time.process_time()
            self.cache[key] = self.fn(*args)
            self.cpu += time.process_time() - t0
            self.fresh += 1
        return self.cache[key]


def _markdown(df: pd.DataFrame, digits: int = 3) -> str:
    def cell(v: object) -> str:
        return f"{v:.{digits}f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from", dest="from_ckpt", help="float cnn1d checkpoint")
    ap.add_argument(
        "--report", nargs="+", metavar="RUN", help="no search: the tables of these seed folders (parallel runs)"
    )
    ap.add_argument("--out", default="runs/bench_fronts")
    ap.add_argument("--dataset", default="mnist1d")
    ap.add_argument("--model", default=None, help="zoo name or file.py:factory (default: the dataset's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=100)
    ap.add_argument("--final-top-k", type=int, default=1)
    ap.add_argument("--final-epochs", type=int, default=2)
    ap.add_argument("--max-acc-drop", type=float, default=0.3)
    ap.add_argument("--methods", default="ppo,tpe,ilp,random,greedy")
    ap.add_argument("--archs", nargs="+", default=["demo", "cim-aq"])
    ap.add_argument("--ppo", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--cache", default=None, help="JSON file of accuracies and final scores shared by runs")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    if args.report:
        chosen = []
        for run in args.report:
            doc = yaml.safe_load((Path(run) / "best_policy.yaml").read_text())["archs"]
            seed = yaml.safe_load((Path(run) / "search_config.yaml").read_text())["seed"]
            for a, b in doc.items():
                chosen.append({"seed": seed, "arch": a, **{k: v for k, v in b.items() if k != "policy"}})
        out.mkdir(parents=True, exist_ok=True)
        report([Path(r) for r in args.report], chosen, out)
        return
    if not args.from_ckpt:
        ap.error("--from CKPT is needed to search")
    settings = {
        "model": args.model,
        "dataset": args.dataset,
        "episodes": args.episodes,
        "final_top_k": args.final_top_k,
        "final_epochs": args.final_epochs,
        "max_acc_drop": args.max_acc_drop,
        "methods": tuple(m for m in args.methods.split(",") if m),
        "ppo": _ppo_config(args.ppo),
    }
    archs = [arch.load(a) for a in args.archs]
    cfg0 = SearchConfig(**settings)
    splits, network, _ = prepare(cfg0, archs)
    model = load_checkpoint(args.from_ckpt).build()
    fq = QATAccuracy(model, splits)
    accuracy = Memo(fq)
    finals = Memo(lambda policy, targets: final_scores(fq, policy, targets, cfg0.final_epochs, 0))
    cache_key = [args.from_ckpt, cfg0.dataset, cfg0.final_epochs]
    if args.cache and Path(args.cache).is_file():
        try:
            stored = json.loads(Path(args.cache).read_text())
        except (ValueError, UnicodeDecodeError):
            stored = {}  # not this script's JSON (e.g. an older pickle): start afresh, it is overwritten
        if stored.get("key") == cache_key:
            accuracy.cache.update((policy_key(p), float(a)) for p, a in stored["accuracy"])
            finals.cache.update((policy_key(p), [FinalScores(*map(float, v)) for v in s]) for p, s in stored["finals"])

    def save_cache() -> None:
        if args.cache:
            doc = {
                "key": cache_key,
                "accuracy": [[list(map(list, k)), float(a)] for k, a in accuracy.cache.items()],
                "finals": [[list(map(list, k)), [list(astuple(s)) for s in ss]] for k, ss in finals.cache.items()],
            }
            atomic_write(args.cache, lambda tmp: tmp.write_text(json.dumps(doc)))

    print(
        f"# {cfg0.dataset} {splits.sizes()} (train, val, test), {cfg0.model}: {cfg0.episodes} evaluations per "
        f"method, bound {cfg0.max_acc_drop} pp, final fine-tune of the top {cfg0.final_top_k} for "
        f"{cfg0.final_epochs} epochs (seed 0); search seeds {args.seeds}; PPO {cfg0.ppo.as_dict()}; torch 1 thread\n",
        flush=True,
    )
    runs, chosen = [], []
    for seed in args.seeds:
        cfg = SearchConfig(**settings, seed=seed)
        t0, c0, n0, f0 = time.perf_counter(), time.process_time(), accuracy.fresh, finals.fresh
        res = search_archs(network, archs, cfg, lambda spec: accuracy, finals)
        write_results(res, out / f"seed{seed}", cfg)
        save_cache()
        runs.append(out / f"seed{seed}")
        for label, b in res.best.items():
            chosen.append({"seed": seed, "arch": label, **{k: v for k, v in b.items() if k != "policy"}})
        print(
            f"seed {seed}: {time.process_time() - c0:.0f} CPU s ({time.perf_counter() - t0:.0f} s wall), "
            f"{accuracy.fresh - n0} new evaluations, {finals.fresh - f0} new fine-tunes",
            flush=True,
        )
    per_eval = accuracy.cpu / max(accuracy.fresh, 1)
    per_epoch = finals.cpu / max(finals.fresh * max(cfg0.final_epochs, 1), 1)
    print(
        f"\nCPU cost: {per_eval:.3f} s per evaluation ({accuracy.fresh} in all), {per_epoch:.2f} s per fine-tune "
        f"epoch incl. its val/test measurement ({finals.fresh} fine-tunes)"
    )
    report(runs, chosen, out)


def report(runs: list[Path], chosen: list[dict], out: Path) -> None:
    """The Markdown tables of benchmarks/RESULTS.md from the seed folders ``runs``."""
    table = compare_runs(runs)
    table.to_csv(out / "compare.csv", index=False)
    print("\n## Hypervolume per method over seeds (speedup x pp above (1.0, bound))\n")
    cols = ["arch", "method", "runs", "evaluations", "hypervolume_mean", "hypervolume_std", "hypervolume_min"]
    cols += ["hypervolume_max", "hypervolume_vs_best", "speedup_mean", "acc_drop_pp_mean", "within_bound_share"]
    searching = table[~table.method.str.startswith("uniform")]
    summaries = pd.concat([pd.read_csv(r / "summary.csv") for r in runs])
    if "front_resident" in summaries:  # the share of front points whose weights are resident on the chip
        fronts = summaries.groupby(["arch", "method"], sort=False)["front_resident"].mean()
        searching = searching.merge(fronts.rename("front_resident_share").reset_index(), on=["arch", "method"])
        cols.append("front_resident_share")
    print(_markdown(searching[cols]))
    print("\n## Chosen policy per seed and arch (validation after the final fine-tune; test only reported)\n")
    best = pd.DataFrame(chosen)
    best.to_csv(out / "chosen.csv", index=False)
    bcols = ["seed", "arch", "method", "speedup_vs_w8a8", "final_val_acc", "within_bound", "test_acc", "acc_drop_pp"]
    print(_markdown(best[bcols], 4))
    print("\n## Targets\n")
    for label, g in best.groupby("arch", sort=False):
        need_s, need_d = TARGETS.get(label, (np.nan, np.nan))
        met = ((g.speedup_vs_w8a8 >= need_s) & (g.acc_drop_pp <= need_d)).sum()
        print(f"- {label}: >= {need_s}x with <= {need_d} pp test loss on {met} of {len(g)} seeds")
    for label, g in searching.groupby("arch", sort=False):
        ppo = g[g.method == "ppo"]
        if ppo.empty:
            continue
        top = g.loc[g.hypervolume_mean.idxmax()]
        print(
            f"- {label}: PPO mean hypervolume {ppo.hypervolume_mean.iloc[0]:.2f} vs best {top.method} "
            f"{top.hypervolume_mean:.2f} ({100 * ppo.hypervolume_vs_best.iloc[0]:.0f} % of it)"
        )


if __name__ == "__main__":
    main()
