"""``cimdse search``: per-layer bit widths found by PPO and the baselines, per arch;
``cimdse compare``: several search runs (seeds) side by side; ``cimdse pretrain-agent``:
rebuild the pre-trained agent the ``ppo`` method starts from."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from cimdse.cli.common import DefaultsHelpFormatter, add_arch_options, add_seed_option, load_archs
from cimdse.errors import CimdseError
from cimdse.search.config import DATASET_DEFAULTS, DEFAULT_METHODS, SEARCH_METHODS, PPOConfig, SearchConfig, SearchEvent
from cimdse.search.reward import REWARDS

# the fields' defaults, not SearchConfig(): that resolves the default model (torch)
_DEFAULTS = argparse.Namespace(**{f.name: f.default for f in dataclasses.fields(SearchConfig)})
_PER_DATASET = ", ".join(f"{d}: {v}" for d, v in DATASET_DEFAULTS.items() if d != "*")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search per-layer (w_bits, a_bits) with PPO and baselines; write history/pareto/summary CSVs",
        description=(
            "Pre-trains the float model once (cached as OUT/float_model.pt, or --from CKPT), then on every "
            "--arch runs the --methods (PPO, Optuna TPE, sensitivity + ILP, random search, greedy per-layer "
            "sensitivity; each --episodes distinct evaluations) and uniform k/k for k = 8..2; finally "
            "fine-tunes each method's --final-top-k highest-reward policies, keeps the fastest within the "
            "bound on validation and reports its test "
            "accuracy. Budgets not given take the dataset's defaults ("
            + _PER_DATASET
            + "; others: "
            + str(DATASET_DEFAULTS["*"])
            + "). Writes OUT/history.csv, pareto.csv, summary.csv, best_policy.yaml "
            "(+ best_policy_<arch>.yaml, loadable by `cimdse compile --policy`), agent_<arch>.pt, timing.csv. "
            "history.csv is written as evaluations happen; rerun the same command to resume an interrupted search."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=None,
        help="zoo model or path/to/file.py:factory (default: lenet on digits, cnn1d on mnist1d)",
    )
    p.add_argument(
        "--dataset",
        default=_DEFAULTS.dataset,
        help="digits or mnist1d[:train=N,val=N,test=N,seed=S] (embedded), mnist, cifar10, imagefolder",
    )
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files (not for embedded ones)")
    add_arch_options(p, multiple=True, required=False)
    p.add_argument(
        "--max-acc-drop",
        type=float,
        default=_DEFAULTS.max_acc_drop,
        metavar="PP",
        help="accuracy bound: pp below the W8A8 model's validation accuracy",
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="budget of each searching method: distinct policies evaluated (default: per dataset, above)",
    )
    p.add_argument(
        "--finetune-epochs",
        type=int,
        default=_DEFAULTS.finetune_epochs,
        help="QAT epochs inside each evaluation (0: calibrate only)",
    )
    p.add_argument(
        "--finetune-within",
        type=_pp_or_none,
        default=_DEFAULTS.finetune_within_pp,
        metavar="PP",
        help="with --finetune-epochs, fine-tune only policies whose calibration-only accuracy is at most PP "
        "below the calibration-only W8A8 one ('none': all)",
    )
    p.add_argument(
        "--final-epochs",
        type=int,
        default=None,
        help="QAT epochs of the final fine-tune of each method's top policies (default: per dataset, above)",
    )
    p.add_argument(
        "--final-top-k",
        type=int,
        default=None,
        help="final fine-tune of each method's K highest-reward policies; the fastest within the bound "
        "on validation is kept (default: per dataset, above)",
    )
    p.add_argument(
        "--pretrain-epochs", type=int, default=None, help="float pre-training epochs (default: per dataset, above)"
    )
    p.add_argument(
        "--accuracy",
        choices=("fake-quant", "hardware"),
        default=_DEFAULTS.accuracy,
        help="evaluate on exact fake quantization or on the arch's crossbar model (slow)",
    )
    p.add_argument(
        "--hardware-aware",
        action="store_true",
        help="with --accuracy hardware: the final fine-tune is ADC-aware QAT on each arch's crossbar model",
    )
    p.add_argument("--min-bits", type=int, default=_DEFAULTS.min_bits)
    p.add_argument("--max-bits", type=int, default=_DEFAULTS.max_bits)
    p.add_argument("--first-last-8bit", action="store_true", help="pin the first and last crossbar layer at 8/8")
    p.add_argument("--cell-multiple", action="store_true", help="weight bits a multiple of the arch's cell_bits")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"searching methods to run, from {','.join(SEARCH_METHODS)} (uniform k/k always run)",
    )
    p.add_argument("--reward", choices=tuple(REWARDS), default=_DEFAULTS.reward, help="what the searches maximize")
    p.add_argument("--policy", metavar="FILE", help="also evaluate this policy (method 'user')")
    p.add_argument("--from", dest="from_ckpt", metavar="CKPT", help="float checkpoint from `cimdse train`")
    p.add_argument(
        "--agent-from",
        metavar="PATH",
        help="continue from a trained agent: an agent_<arch>.pt, or a previous OUT folder (agent_<arch>.pt)",
    )
    ppo_keys = ", ".join(f.name for f in dataclasses.fields(PPOConfig))
    p.add_argument(
        "--ppo",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"PPO hyperparameter (repeatable); keys: {ppo_keys}",
    )
    add_seed_option(
        p,
        _DEFAULTS.seed,
        "seeds the float model's pre-training and the searching methods (PPO, TPE, random); the "
        "evaluations' calibration and fine-tunes use a fixed seed, so with --from greedy, ILP and uniform "
        "give the same results on every seed",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda: pre-training, QAT fine-tunes and accuracy evaluations run there (default cpu)",
    )
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder; a search interrupted there resumes when rerun with the same settings",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a search with other settings in --out (else refused)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_search)

    c = sub.add_parser(
        "compare",
        help="several search runs (seeds) side by side: mean and spread of hypervolume, speedup, accuracy drop",
        description="Reads each RUN/summary.csv and prints, per arch and method, the mean, standard deviation, "
        "minimum and maximum of the hypervolume over the runs, the chosen policy's mean speedup and test-accuracy "
        "drop, and the share of runs whose choice was within the bound. --out writes compare.csv.",
    )
    c.add_argument("runs", nargs="+", metavar="RUN", help="search output folders (e.g. one per seed)")
    c.add_argument("--out", metavar="FILE", help="write the table as CSV")
    c.set_defaults(func=_compare)

    t = sub.add_parser(
        "pretrain-agent",
        help="pre-train the search agent over the zoo's networks and the presets (no dataset; minutes)",
        description="Pre-trains the ppo method's agent against accuracy surrogates drawn from a prior, on every "
        "small zoo network and preset, with latencies from the cost model (cimdse/search/pretrain.py), and "
        "writes it as an agent file. The shipped one is rebuilt with --out "
        "cimdse/search/data/agent_pretrained.pt and the defaults; --agent-from takes any such file.",
        formatter_class=DefaultsHelpFormatter,
    )
    t.add_argument("--out", required=True, metavar="FILE", help="the agent file to write (.pt)")
    t.add_argument("--updates", type=int, default=None, help="PPO updates of 128 surrogate episodes each")
    add_seed_option(t, 0, "seeds the tasks, the surrogates drawn and the agent")
    t.add_argument(
        "--ppo", action="append", default=[], metavar="KEY=VALUE",
        help="PPO hyperparameter of the pre-training (repeatable; default ent_coef=0.05, wide_prior=0)",
    )  # fmt: skip
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_pretrain_agent)


def _pretrain_agent(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import torch
    from tqdm import tqdm

    from cimdse.files import output_dir
    from cimdse.search.pretrain import PRETRAIN_PPO, PRETRAIN_UPDATES, pretrain_agent

    updates = PRETRAIN_UPDATES if args.updates is None else args.updates
    if updates < 1:
        raise CimdseError(f"--updates {updates}: at least 1")
    out = Path(args.out)
    if out.is_dir():
        raise CimdseError(f"{out}: a folder; give the agent file to write")
    config = PPOConfig(**{**PRETRAIN_PPO, **_ppo_values(args.ppo)})  # type: ignore[arg-type]
    folder = output_dir(out.parent)  # a folder that cannot be made fails now, not after the training
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    with tqdm(total=updates, desc="pretrain-agent", unit="update", file=sys.stderr, disable=args.quiet) as bar:
        agent = pretrain_agent(updates, args.seed, config, progress=lambda done, total: bar.update(done - bar.n))
    path = agent.save(folder / out.name)
    print(
        f"wrote {path}: {updates} updates, {agent.episodes} surrogate episodes, seed {args.seed}; "
        f"{time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU s, torch 1 thread"
    )
    return 0


def _compare(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cimdse.files import output_dir, write_csv
    from cimdse.search.compare import compare_runs

    table = compare_runs(args.runs)
    if args.out:
        out = Path(args.out)
        write_csv(table, output_dir(out.parent) / out.name)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


def _ppo_config(items: list[str]) -> PPOConfig:
    return PPOConfig(**_ppo_values(items))  # type: ignore[arg-type]


def _ppo_values(items: list[str]) -> dict[str, object]:
    """``--ppo KEY=VALUE`` items as PPOConfig keyword arguments, each checked."""
    fields = {f.name: f for f in dataclasses.fields(PPOConfig)}
    hints = typing.get_type_hints(PPOConfig)
    values: dict[str, object] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in fields:
            raise CimdseError(f"--ppo {item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = hints[key]
        try:
            if kind is bool:
                values[key] = _flag(text)
            elif kind is int:
                values[key] = int(text)
            elif kind is float:
                values[key] = float(text)
            else:  # net_arch: 64,64
                values[key] = tuple(int(t) for t in text.replace("x", ",").split(",") if t.strip())
        except ValueError:
            raise CimdseError(f"--ppo {item!r}: {text!r} is not a valid {key}") from None
    return values


def _flag(text: str) -> bool:
    word = text.strip().lower()
    if word in ("1", "true", "yes", "on"):
        return True
    if word in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


def _pp_or_none(text: str) -> float | None:
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of pp or 'none'") from None


def _methods(text: str) -> tuple[str, ...]:
    """``ppo,tpe`` -> ("ppo", "tpe"); an empty list or an empty name is refused, not dropped."""
    names = tuple(m.strip() for m in text.split(","))
    if not any(names):
        raise CimdseError(f"--methods {text!r}: name at least one of {','.join(SEARCH_METHODS)}")
    if not all(names):
        raise CimdseError(f"--methods {text!r}: an empty name between commas")
    return names


def _search(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from cimdse.quant.train import resolve_device
    from cimdse.search.run import run_search

    resolve_device(args.device)
    torch.set_num_threads(max(1, args.threads))
    if args.arch is None:
        args.arch = ["demo"]
    methods = _methods(args.methods)
    config = SearchConfig(
        model=args.model,
        dataset=args.dataset,
        data_dir=args.data_dir,
        episodes=args.episodes,
        max_acc_drop=args.max_acc_drop,
        finetune_epochs=args.finetune_epochs,
        finetune_within_pp=args.finetune_within,
        final_epochs=args.final_epochs,
        final_top_k=args.final_top_k,
        pretrain_epochs=args.pretrain_epochs,
        seed=args.seed,
        min_bits=args.min_bits,
        max_bits=args.max_bits,
        first_last_8bit=args.first_last_8bit,
        weight_cell_multiple=args.cell_multiple,
        accuracy=args.accuracy,
        hardware_aware=args.hardware_aware,
        methods=methods,
        reward=args.reward,
        ppo=_ppo_config(args.ppo),
    )
    archs = load_archs(args)
    bars: dict[str, tqdm] = {}

    def progress(ev: SearchEvent) -> None:
        if ev.phase == "resume":
            print(f"resuming: {ev.done} evaluations done", file=sys.stderr, flush=True)
            return
        bar = bars.get(ev.phase)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[ev.phase] = tqdm(
                total=ev.total,
                desc=ev.phase,
                unit="epoch" if ev.phase == "pretrain" else "policy",
                file=sys.stderr,
                disable=args.quiet,
            )
        if ev.phase == "search":
            best = f"{ev.best_speedup:.2f}x" if ev.best_speedup else "-"
            bar.set_postfix(arch=ev.arch, method=ev.method, best=best)
        bar.update(ev.done - bar.n)

    try:
        result = run_search(
            config,
            archs,
            args.out,
            from_ckpt=args.from_ckpt,
            agent_from=args.agent_from,
            policy_file=args.policy,
            progress=progress,
            device=args.device,
            overwrite=args.overwrite,
        )
    finally:
        for bar in bars.values():
            bar.close()
    s = result.summary
    refs = ", ".join(f"{label} {b['w8a8_final_val_acc']:.4f}" for label, b in result.best.items())
    print(
        f"bound: {config.max_acc_drop} pp below W8A8's validation accuracy: {result.ref_val_acc:.4f} as the "
        f"search evaluates it; after the final fine-tune (which within_bound and the choice use) {refs}"
    )
    cols = ["arch", "method", "evaluations", "hypervolume", "speedup_vs_w8a8", "final_val_acc", "within_bound"]
    cols += ["test_acc", "acc_drop_pp"]
    if config.accuracy == "hardware":
        cols += ["fq_final_val_acc", "fq_test_acc"]
    with_cols = s[cols]
    print(with_cols.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for label, b in result.best.items():
        bound = "within" if b["within_bound"] else "NOT within"
        print(
            f"best on {label}: {b['method']} (reward rank {b['rank']}), {b['speedup_vs_w8a8']:.2f}x, fine-tuned val "
            f"{b['final_val_acc']:.4f} ({bound} the bound), test {b['test_acc']:.4f} ({b['acc_drop_pp']:+.2f} pp)"
        )
    t, cpu = result.timings, result.cpu_timings
    parts = [f"{k.removesuffix('_s')} {v:.1f}/{cpu.get(k, float('nan')):.1f}" for k, v in t.items()]
    print("time (s, wall/CPU of this process): " + ", ".join(parts))
    print(f"wrote {args.out}/history.csv, pareto.csv, summary.csv, best_policy.yaml")
    return 0
