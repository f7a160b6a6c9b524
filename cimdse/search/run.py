"""A whole search: every method on every arch with the same budget, then a final
fine-tune of each method's top policies, and the tables that report it.

Final selection: the search ranks policies by reward, whose accuracy is the (cheap,
pessimistic) search-time estimate. Each method's ``final_top_k`` highest-reward
policies are fine-tuned in full (``final_epochs``), and the method's result is the
fastest of them whose fine-tuned *validation* accuracy is within ``max_acc_drop`` of
the fine-tuned W8A8 model's (if none is, the most accurate of them). The arch's
best policy is chosen the same way among the methods' results. The test split is
never used to choose: its accuracy is only reported.

:func:`search_archs` is the core and takes its accuracy evaluators injected (so it
runs anywhere); :func:`run_search` is the real thing: it loads the dataset,
pre-trains the float model once (or reuses ``OUT/float_model.pt`` or ``--from``),
builds the QAT evaluators, runs :func:`search_archs` and writes the files. Nothing
here prints: progress goes to a callback with :class:`SearchEvent` s.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml

from cimdse.arch import ArchSpec
from cimdse.compiler import CompiledNetwork, Network, compile_network, trace_spec
from cimdse.errors import CimdseError
from cimdse.files import output_dir, write_csv, write_text
from cimdse.policy import QUANT, check_search_range, load_policy, save_policy
from cimdse.search.agent import PPOAgent, PPOConfig
from cimdse.search.baselines import UNIFORM_BITS, greedy_search, random_search, uniform_method
from cimdse.search.env import BitWidthEnv
from cimdse.search.evaluator import (
    AccuracyEvaluator,
    CachedEvaluator,
    MethodRecorder,
    Outcome,
    PolicyKey,
    PolicyScorer,
    policy_key,
)
from cimdse.search.reward import CimAqReward
from cimdse.search.space import SearchSpace

__all__ = [
    "HISTORY_COLUMNS",
    "METHODS",
    "PARETO_COLUMNS",
    "SUMMARY_COLUMNS",
    "SearchConfig",
    "SearchEvent",
    "SearchResult",
    "pareto_front",
    "run_search",
    "search_archs",
]

SEARCH_METHODS = ("ppo", "random", "greedy")
METHODS = SEARCH_METHODS + tuple(f"uniform{k}" for k in UNIFORM_BITS)
HISTORY_COLUMNS = ["episode", "method", "arch", "policy", "latency_s", "speedup_vs_w8a8", "val_acc", "reward"]
PARETO_COLUMNS = ["arch", "method", "policy", "latency_s", "speedup_vs_w8a8", "val_acc", "reward"]
SUMMARY_COLUMNS = [
    "arch",
    "method",
    "rank",
    "speedup_vs_w8a8",
    "val_acc",
    "final_val_acc",
    "within_bound",
    "test_acc",
    "acc_drop_pp",
    "evaluations",
]


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search (the ``cimdse search`` options).

    :param episodes: budget of every searching method: distinct policies evaluated
    :param max_acc_drop: accuracy bound, in pp below the W8A8 model's validation accuracy
    :param finetune_epochs: QAT epochs inside each evaluation (0: calibrate only)
    :param finetune_within_pp: with ``finetune_epochs``, fine-tune only the policies whose
        calibration-only accuracy is at most this many pp below the calibration-only
        W8A8 one (None: every policy); see :class:`cimdse.search.accuracy.QATAccuracy`
    :param final_epochs: QAT epochs of the final fine-tune of each method's top policies
    :param final_top_k: how many of each method's highest-reward policies get the final
        fine-tune; the fastest within the bound on validation is the method's result
    :param pretrain_epochs: float pre-training epochs (when no float model is given)
    :param accuracy: ``fake-quant`` or ``hardware`` (the arch's crossbar model)
    :param methods: which searching methods run; uniform k/k always do
    """

    model: str = "lenet"
    dataset: str = "digits"
    data_dir: str | None = None
    episodes: int = 300
    max_acc_drop: float = 0.5
    finetune_epochs: int = 0
    finetune_within_pp: float | None = None
    final_epochs: int = 15
    final_top_k: int = 3
    pretrain_epochs: int = 40
    seed: int = 0
    min_bits: int = 2
    max_bits: int = 8
    first_last_8bit: bool = False
    weight_cell_multiple: bool = False
    accuracy: Literal["fake-quant", "hardware"] = "fake-quant"
    methods: tuple[str, ...] = SEARCH_METHODS
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise CimdseError(f"--episodes {self.episodes}: the budget must be at least 1 evaluation per method")
        if not (self.max_acc_drop >= 0 and math.isfinite(self.max_acc_drop)):
            raise CimdseError(f"--max-acc-drop {self.max_acc_drop}: must be a finite number of pp >= 0")
        for name in ("finetune_epochs", "final_epochs", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise CimdseError(f"--{name.replace('_', '-')} must be >= 0")
        if self.finetune_within_pp is not None and not self.finetune_within_pp >= 0:
            raise CimdseError(f"--finetune-within {self.finetune_within_pp}: must be a number of pp >= 0")
        if self.final_top_k < 1:
            raise CimdseError(f"--final-top-k {self.final_top_k}: must be at least 1")
        check_search_range(self.min_bits, self.max_bits)
        unknown = [m for m in self.methods if m not in SEARCH_METHODS]
        if unknown:
            raise CimdseError(f"--methods: unknown {unknown}; choose from {', '.join(SEARCH_METHODS)}")
        if self.accuracy not in ("fake-quant", "hardware"):
            raise CimdseError(f"--accuracy {self.accuracy!r}: fake-quant or hardware")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        d["ppo"] = self.ppo.as_dict()
        return d


@dataclass(frozen=True)
class SearchEvent:
    """Progress: ``phase`` is ``pretrain`` (per epoch), ``search`` (per new policy) or
    ``finetune`` (per final fine-tune); ``done`` of ``total`` in that phase."""

    phase: str
    done: int
    total: int
    arch: str = ""
    method: str = ""
    best_speedup: float | None = None


Progress = Callable[[SearchEvent], None]


@dataclass
class SearchResult:
    history: pd.DataFrame
    pareto: pd.DataFrame
    summary: pd.DataFrame
    best: dict[str, dict]  # arch -> method, policy (by layer), speedup, accuracies
    ref_val_acc: float
    timings: dict[str, float]


def pareto_front(history: pd.DataFrame) -> pd.DataFrame:
    """Non-dominated (speedup_vs_w8a8, val_acc) points per arch, both maximized.

    A policy found by several methods counts once (its first row); points with the
    same speedup and accuracy are all kept (neither dominates). Sorted by arch, then
    by decreasing speedup.
    """
    if history.empty:
        return pd.DataFrame(columns=PARETO_COLUMNS)
    keep = []
    for _, group in history.drop_duplicates(["arch", "policy"]).groupby("arch", sort=False):
        s = group["speedup_vs_w8a8"].to_numpy(float)
        a = group["val_acc"].to_numpy(float)
        ge = (s[None, :] >= s[:, None]) & (a[None, :] >= a[:, None])
        gt = (s[None, :] > s[:, None]) | (a[None, :] > a[:, None])
        dominated = (ge & gt).any(axis=1)  # row i: some j at least as good in both, better in one
        keep.append(group[~dominated])
    front = pd.concat(keep)
    front = front.sort_values(["arch", "speedup_vs_w8a8", "val_acc"], ascending=[True, False, False], kind="stable")
    return front[PARETO_COLUMNS].reset_index(drop=True)


def _unique_labels(archs: Sequence[ArchSpec]) -> list[str]:
    labels: list[str] = []
    for spec in archs:
        base, n = spec.name, 1
        label = base
        while label in labels:
            n += 1
            label = f"{base}-{n}"
        labels.append(label)
    return labels


def search_archs(
    network: Network,
    archs: Sequence[ArchSpec],
    config: SearchConfig,
    make_accuracy: Callable[[ArchSpec], AccuracyEvaluator],
    final_eval: Callable[[np.ndarray], tuple[float, float]],
    *,
    arch_dependent: bool = False,
    user_policy: np.ndarray | None = None,
    agent_from: Callable[[str], Path | None] | None = None,
    agent_to: Callable[[str], Path] | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Every method on every arch, then the final fine-tune of each method's top
    ``config.final_top_k`` policies and the choice among them (see the module doc).

    :param make_accuracy: the accuracy evaluator for an arch; called once when
        ``arch_dependent`` is False (its cache is then shared by all archs)
    :param final_eval: (val, test) accuracy after the final fine-tune of a policy (it
        must not depend on the arch); called once per distinct policy, W8A8 included
    :param user_policy: an extra policy [L, 2] reported as method ``user``
    :param agent_from: the agent checkpoint to continue from, per arch label (or None)
    :param agent_to: where to save each arch's agent after its search
    """
    t_start = time.perf_counter()
    labels = _unique_labels(archs)
    n = len(network.layers)
    compiled: dict[str, CompiledNetwork] = {
        lab: compile_network(network, spec) for lab, spec in zip(labels, archs, strict=True)
    }
    shared = None if arch_dependent else CachedEvaluator(make_accuracy(archs[0]))
    reward = CimAqReward(config.max_acc_drop)
    methods = [f"uniform{k}" for k in UNIFORM_BITS] + [m for m in ("greedy", "random", "ppo") if m in config.methods]
    if user_policy is not None:
        methods.insert(0, "user")
    total = len(labels) * sum(config.episodes if m in SEARCH_METHODS else 1 for m in methods)
    done = 0
    best_speedup: dict[str, float] = {}

    def on_eval(arch: str, method: str, out: Outcome) -> None:
        nonlocal done
        done += 1
        if out.within_bound:
            best_speedup[arch] = max(best_speedup.get(arch, 0.0), out.speedup)
        if progress is not None:
            progress(SearchEvent("search", done, total, arch, method, best_speedup.get(arch)))

    recorders: list[MethodRecorder] = []
    timings = {"evaluations_s": 0.0, "ppo_s": 0.0, "baselines_s": 0.0}
    ref_acc = math.nan
    evaluators: list[CachedEvaluator] = []
    for a_idx, (label, spec) in enumerate(zip(labels, archs, strict=True)):
        acc = shared if shared is not None else CachedEvaluator(make_accuracy(spec))
        if acc not in evaluators:
            evaluators.append(acc)
        ref_acc = acc(np.full((n, 2), 8))
        scorer = PolicyScorer(compiled[label], acc, reward, ref_acc)
        space = SearchSpace(
            n,
            spec.crossbar.cell_bits,
            config.min_bits,
            config.max_bits,
            config.first_last_8bit,
            config.weight_cell_multiple,
        )
        for method in methods:
            budget = config.episodes if method in SEARCH_METHODS else 1
            rec = MethodRecorder(scorer, label, method, budget, on_eval)
            recorders.append(rec)
            t0, e0 = time.perf_counter(), acc.seconds
            if method == "user":
                rec(user_policy)
            elif method.startswith("uniform"):
                uniform_method(rec, space, int(method[len("uniform") :]))
            elif method == "random":
                random_search(rec, space, np.random.default_rng([config.seed, a_idx]))
            elif method == "greedy":
                greedy_search(rec, space)
            else:
                env = BitWidthEnv(compiled[label], space, rec)
                ckpt = agent_from(label) if agent_from is not None else None
                agent = PPOAgent(env, config.ppo, seed=config.seed, checkpoint=ckpt)
                agent.search(rec)
                if agent_to is not None:
                    agent.save(agent_to(label))
            key = "ppo_s" if method == "ppo" else "baselines_s"
            timings[key] += time.perf_counter() - t0 - (acc.seconds - e0)  # the method's own time
    timings["evaluations_s"] = sum(e.seconds for e in evaluators)

    # final fine-tune of each (arch, method)'s top policies; a policy shared by several costs once
    t0 = time.perf_counter()
    tops = [(rec, rec.top(config.final_top_k)) for rec in recorders]
    w8a8 = policy_key(np.full((n, 2), 8))
    todo = list(dict.fromkeys([w8a8] + [o.policy for _, top in tops for o in top]))
    finals: dict[PolicyKey, tuple[float, float]] = {}
    for i, key in enumerate(todo):
        finals[key] = final_eval(np.asarray(key, dtype=np.int64))
        if progress is not None:
            progress(SearchEvent("finetune", i + 1, len(todo)))
    timings["final_finetune_s"] = time.perf_counter() - t0

    ref_val, ref_test = finals[w8a8]
    rows = []
    for rec, top in tops:
        if not top:
            continue
        pick = _choose(top, finals, reward, ref_val)
        val, test = finals[pick.policy]
        rows.append(
            {
                "arch": rec.arch,
                "method": rec.method,
                "rank": 1 + top.index(pick),
                "speedup_vs_w8a8": pick.speedup,
                "val_acc": pick.val_acc,
                "final_val_acc": val,
                "within_bound": reward.within_bound(val, ref_val),
                "test_acc": test,
                "acc_drop_pp": 100.0 * (ref_test - test),
                "evaluations": rec.count,
                "_outcome": pick,
            }
        )
    summary = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, "_outcome"])
    best = _best_per_arch(summary, finals, reward, ref_val, network)
    summary = summary[SUMMARY_COLUMNS]
    history = pd.DataFrame([r for rec in recorders for r in rec.rows], columns=HISTORY_COLUMNS)
    timings["total_s"] = time.perf_counter() - t_start
    return SearchResult(history, pareto_front(history), summary, best, ref_acc, timings)


def _choose(
    candidates: Sequence[Outcome], finals: dict[PolicyKey, tuple[float, float]], reward: CimAqReward, ref_val: float
) -> Outcome:
    """The fastest candidate whose fine-tuned validation accuracy is within the bound
    (ties: the earlier, i.e. higher-reward, one); if none is, the most accurate."""
    ok = [o for o in candidates if reward.within_bound(finals[o.policy][0], ref_val)]
    if ok:
        return max(ok, key=lambda o: o.speedup)
    return max(candidates, key=lambda o: finals[o.policy][0])


def _best_per_arch(
    summary: pd.DataFrame,
    finals: dict[PolicyKey, tuple[float, float]],
    reward: CimAqReward,
    ref_val: float,
    network: Network,
) -> dict[str, dict]:
    """Per arch, the methods' results chosen among the same way (first method wins ties)."""
    best: dict[str, dict] = {}
    for arch, group in summary.groupby("arch", sort=False):
        pick = _choose(list(group["_outcome"]), finals, reward, ref_val)
        row = group[[o is pick for o in group["_outcome"]]].iloc[0]
        val, test = finals[pick.policy]
        best[arch] = {
            "method": row["method"],
            "rank": int(row["rank"]),
            "reward": float(pick.reward),
            "speedup_vs_w8a8": float(pick.speedup),
            "latency_s": float(pick.latency_s),
            "val_acc": float(pick.val_acc),
            "final_val_acc": float(val),
            "within_bound": bool(reward.within_bound(val, ref_val)),
            "test_acc": float(test),
            "acc_drop_pp": float(row["acc_drop_pp"]),
            "policy": {name: [w, a] for name, (w, a) in zip(network.names, pick.policy, strict=True)},
        }
    return best


# ---------------------------------------------------------------- the real run
def _float_model(config: SearchConfig, splits, out: Path | None, from_ckpt: str | None, progress: Progress | None):
    """The pre-trained float model: ``--from CKPT``, else ``OUT/float_model.pt`` when it
    was trained with the same settings, else pre-trained now (and cached there)."""
    import torch

    from cimdse import models
    from cimdse.quant.apply import crossbar_layers
    from cimdse.quant.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from cimdse.quant.train import check_model_fits, pretrain

    if from_ckpt is not None:
        ckpt = load_checkpoint(from_ckpt)
        if ckpt.quantized:
            raise CimdseError(f"{from_ckpt}: holds a quantized model; the search starts from a float checkpoint")
        if ckpt.model != config.model:
            raise CimdseError(f"{from_ckpt}: holds model {ckpt.model!r}, not --model {config.model!r}")
        return ckpt.build(), 0.0
    cache = out / "float_model.pt" if out is not None else None
    settings = {"pretrain_epochs": float(config.pretrain_epochs), "seed_": float(config.seed)}
    if cache is not None and cache.is_file():
        try:
            ckpt = load_checkpoint(cache)
        except CimdseError:
            ckpt = None
        if (
            ckpt is not None
            and not ckpt.quantized
            and ckpt.model == config.model
            and ckpt.dataset == splits.name
            and ckpt.seed == config.seed
            and all(ckpt.metrics.get(k) == v for k, v in settings.items())
        ):
            return ckpt.build(), 0.0
    model = models.load_model(config.model, splits.num_classes, seed=config.seed)
    check_model_fits(model, splits, config.model)
    t0 = time.perf_counter()

    def on_epoch(m) -> None:
        if progress is not None:
            progress(SearchEvent("pretrain", m.epoch, config.pretrain_epochs))

    if config.pretrain_epochs:
        pretrain(model, splits, config.pretrain_epochs, config.seed, callback=on_epoch)
    seconds = time.perf_counter() - t0
    if cache is not None:
        ckpt = Checkpoint(
            model=config.model,
            num_classes=splits.num_classes,
            input_shape=splits.input_shape,
            dataset=splits.name,
            data_dir=str(Path(config.data_dir).resolve()) if config.data_dir else None,
            seed=config.seed,
            layers=crossbar_layers(model, splits.input_shape),
            state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
            metrics=settings,
        )
        save_checkpoint(ckpt, cache)
    torch.manual_seed(config.seed)
    return model.eval(), seconds


def prepare(config: SearchConfig, archs: Sequence[ArchSpec], policy_file: str | None = None):
    """Everything that can fail on bad input, before any file is written: the
    dataset, the model (traced), the archs (compiled) and the user policy."""
    from cimdse import models
    from cimdse.compiler import trace
    from cimdse.data import load_dataset
    from cimdse.quant.apply import check_quantizable
    from cimdse.quant.train import check_model_fits

    if not archs:
        raise CimdseError("give at least one --arch")
    splits = load_dataset(config.dataset, config.data_dir, seed=0)
    probe = models.load_model(config.model, splits.num_classes, seed=config.seed)
    check_model_fits(probe, splits, config.model)
    network = trace(probe, splits.input_shape)
    check_quantizable(network)  # the search quantizes every policy it scores
    for spec in archs:
        compile_network(network, spec)  # a spec the mapper rejects fails here
        cells = spec.crossbar.cell_bits  # and a bit range the constraints leave empty
        SearchSpace(len(network.layers), cells, config.min_bits, config.max_bits, False, config.weight_cell_multiple)
    user = load_policy(policy_file, network, QUANT) if policy_file else None
    return splits, network, user


def run_search(
    config: SearchConfig,
    archs: Sequence[ArchSpec],
    out: str | Path,
    *,
    from_ckpt: str | None = None,
    agent_from: str | None = None,
    policy_file: str | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """The full search with real QAT evaluations; writes its files into ``out``
    (created once the inputs are checked): history.csv, pareto.csv, summary.csv, best_policy.yaml,
    best_policy_<arch>.yaml, agent_<arch>.zip, timing.csv, search_config.yaml,
    float_model.pt (the pre-trained model, reused by a later run with the same settings)."""
    from cimdse.search.accuracy import QATAccuracy, final_finetune

    splits, network, user = prepare(config, archs, policy_file)
    agent_path = _agent_source(agent_from)
    given = _float_model(config, splits, None, from_ckpt, progress) if from_ckpt is not None else None
    out = output_dir(out)  # every input is valid: only now touch the file system
    float_model, pretrain_s = given or _float_model(config, splits, out, None, progress)

    def evaluator(hardware: ArchSpec | None) -> QATAccuracy:
        return QATAccuracy(
            float_model, splits, config.finetune_epochs, config.seed, hardware, config.finetune_within_pp
        )

    fq = evaluator(None)

    def make_accuracy(spec: ArchSpec) -> AccuracyEvaluator:
        return evaluator(spec) if config.accuracy == "hardware" else fq

    result = search_archs(
        network,
        archs,
        config,
        make_accuracy,
        lambda policy: final_finetune(fq, policy, config.final_epochs, config.seed),
        arch_dependent=config.accuracy == "hardware",
        user_policy=user,
        agent_from=agent_path,
        agent_to=lambda label: out / f"agent_{_safe(label)}.zip",
        progress=progress,
    )
    result.timings = {"pretrain_s": pretrain_s, **result.timings}
    write_results(result, out, config)
    return result


def _agent_source(agent_from: str | None) -> Callable[[str], Path | None] | None:
    if agent_from is None:
        return None
    src = Path(agent_from)
    if not src.exists():
        raise CimdseError(f"{src}: no such agent checkpoint or folder")

    def pick(label: str) -> Path | None:
        if src.is_file():
            return src
        cand = src / f"agent_{_safe(label)}.zip"
        if not cand.is_file():
            raise CimdseError(f"{src}: has no agent for arch {label!r} ({cand.name})")
        return cand

    return pick


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def write_results(result: SearchResult, out: Path, config: SearchConfig) -> None:
    """The run's files, each written atomically."""
    write_csv(result.history, out / "history.csv")
    write_csv(result.pareto, out / "pareto.csv")
    write_csv(result.summary, out / "summary.csv")
    for label, best in result.best.items():
        save_policy(list(best["policy"].values()), list(best["policy"]), out / f"best_policy_{_safe(label)}.yaml")
    first = next(iter(result.best))
    # top-level ``policy`` (first arch) keeps the file readable by policy readers and `cimdse report`
    doc = {"arch": first, "policy": result.best[first]["policy"], "archs": result.best}
    write_text(yaml.safe_dump(doc, sort_keys=False), out / "best_policy.yaml")
    timing = pd.DataFrame([{"phase": k.removesuffix("_s"), "seconds": v} for k, v in result.timings.items()])
    write_csv(timing, out / "timing.csv")
    meta = {**config.as_dict(), "w8a8_val_acc": result.ref_val_acc}
    write_text(yaml.safe_dump(meta, sort_keys=False), out / "search_config.yaml")


def sweep_point(
    model_ref: str, input_shape: Sequence[int] | None, arch: ArchSpec, options: dict, out_dir: str | Path
) -> dict:
    """One point of a ``cimdse sweep`` with a ``search:`` section: the full search on
    ``arch`` into ``out_dir``; ``options`` are :class:`SearchConfig` fields (``episodes``,
    ``dataset``, ``max_acc_drop``, ...). Returns the best policy's costs, its
    validation accuracy and the path of its policy file."""
    fields = {f for f in SearchConfig.__dataclass_fields__ if f not in ("model", "ppo")}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise CimdseError(f"search options {unknown} unknown; known: {', '.join(sorted(fields))}")
    opts = dict(options)
    if "methods" in opts:
        opts["methods"] = tuple(opts["methods"])
    config = SearchConfig(model=model_ref, **opts)
    out = Path(out_dir)
    result = run_search(config, [arch], out)
    label, best = next(iter(result.best.items()))
    compiled = compile_network(trace_spec(model_ref, tuple(input_shape) if input_shape else None), arch)
    policy = np.array(list(best["policy"].values()), dtype=np.int64)
    ev = compiled.evaluate(policy)
    return {
        "latency_s": float(ev.latency_s[0]),
        "interval_s": float(ev.interval_s[0]),
        "energy_j": float(ev.energy_j[0]),
        "area_mm2": float(ev.area_mm2),
        "occupied_area_mm2": float(ev.occupied_area_mm2[0]),
        "resident_area_mm2": float(ev.resident_area_mm2[0]),
        "crossbars": int(ev.crossbars[0]),
        "speedup_vs_w8a8": float(best["speedup_vs_w8a8"]),
        "val_acc": float(best["val_acc"]),
        "policy": str(out / f"best_policy_{_safe(label)}.yaml"),
    }
