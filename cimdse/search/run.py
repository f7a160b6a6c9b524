"""The real search: load the dataset, pre-train the float model once (or reuse
``OUT/float_model.pt`` or ``--from``), build the QAT accuracy evaluators, run
:func:`cimdse.search.core.search_archs` and write the files. Nothing here prints:
progress goes to a callback with :class:`SearchEvent` s.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cimdse.arch import ArchSpec
from cimdse.compiler import compile_network, trace_spec
from cimdse.errors import CimdseError, first_line
from cimdse.files import output_dir, write_csv, write_text
from cimdse.policy import QUANT, load_policy, save_policy
from cimdse.search.agent import AGENT_SUFFIX, AgentFile, read_agent
from cimdse.search.config import Progress, SearchConfig, SearchEvent, sweep_options
from cimdse.search.core import SearchResult, search_archs, unique_labels
from cimdse.search.episodes import AGENT_OBS_DIM
from cimdse.search.evaluator import AccuracyEvaluator
from cimdse.search.history import HistoryLog, known_accuracies
from cimdse.search.space import SearchSpace

__all__ = ["EVAL_SEED", "prepare", "run_search", "sweep_point", "write_results"]

#: the seed of every measurement (calibration, the fine-tunes inside evaluations and the
#: final ones): fixed, so ``--seed`` varies what it should and no more: the float model's
#: pre-training (when it is trained here) and the searching methods' own randomness
#: (PPO, TPE, random). With the same float model (``--from``), greedy, the ILP and the
#: uniform policies then give the same results on every seed.
EVAL_SEED = 0


# ---------------------------------------------------------------- the real run
def _float_model(
    config: SearchConfig, splits, out: Path | None, from_ckpt: str | None, progress: Progress | None, device="cpu"
):
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
        torch.manual_seed(config.seed)  # as after a pre-training: what follows draws the same numbers
        return ckpt.build().eval(), 0.0
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
            torch.manual_seed(config.seed)
            return ckpt.build().eval(), 0.0
    model = models.load_model(config.model, splits.num_classes, seed=config.seed)
    check_model_fits(model, splits, config.model)
    t0 = time.perf_counter()

    def on_epoch(m) -> None:
        if progress is not None:
            progress(SearchEvent("pretrain", m.epoch, config.pretrain_epochs))

    if config.pretrain_epochs:
        pretrain(model, splits, config.pretrain_epochs, config.seed, device=device, callback=on_epoch)
        model.cpu()
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
    overwrite: bool = False,
    device: str = "cpu",
) -> SearchResult:
    """The full search with real QAT evaluations; writes its files into ``out``
    (created once the inputs are checked): history.csv (as evaluations happen),
    pareto.csv, summary.csv, best_policy.yaml, best_policy_<arch>.yaml, agent_<arch>.pt,
    timing.csv, search_config.yaml, float_model.pt (the pre-trained model, reused by a
    later run with the same settings).

    A folder holding a search with the same settings (``search_config.yaml``) is
    resumed from its history.csv (:mod:`cimdse.search.history`; a ``SearchEvent``
    ``resume`` says how many evaluations were done); one with other settings is
    refused unless ``overwrite``, which removes that run's files first. ``device``: where
    pre-training, fine-tunes and accuracy evaluations run. A write that
    fails (a full disk) is one :class:`CimdseError`; what was logged stays resumable."""
    from cimdse.search.accuracy import QATAccuracy, final_scores

    t_start, c_start = time.perf_counter(), time.process_time()
    splits, network, user = prepare(config, archs, policy_file)
    agents = _read_agents(agent_from, archs, config)  # before pre-training: a bad agent writes nothing
    given = _float_model(config, splits, None, from_ckpt, progress, device) if from_ckpt is not None else None
    record = _run_record(config, archs, from_ckpt, agent_from, policy_file, agents)
    _claim(Path(out), record, overwrite)
    out = output_dir(out)  # every input is valid: only now touch the file system
    log = HistoryLog(out)
    try:
        rows = log.open()
        if rows and progress is not None:
            progress(SearchEvent("resume", len(rows), len(rows)))
        write_text(yaml.safe_dump(record, sort_keys=False), out / CONFIG_NAME)
        t_pre, c_pre = time.perf_counter(), time.process_time()
        float_model, _ = given or _float_model(config, splits, out, None, progress, device)
        pretrain = (time.perf_counter() - t_pre, time.process_time() - c_pre)
        prepared = (t_pre - t_start, c_pre - c_start)

        def evaluator(hardware: ArchSpec | None) -> QATAccuracy:
            return QATAccuracy(
                float_model, splits, config.finetune_epochs, EVAL_SEED, hardware, config.finetune_within_pp, device
            )

        fq = evaluator(None)

        def make_accuracy(spec: ArchSpec) -> AccuracyEvaluator:
            return evaluator(spec) if config.accuracy == "hardware" else fq

        result = search_archs(
            network,
            archs,
            config,
            make_accuracy,
            lambda policy, targets: final_scores(
                fq, policy, targets, config.final_epochs, EVAL_SEED, config.hardware_aware
            ),
            arch_dependent=config.accuracy == "hardware",
            user_policy=user,
            agent_from=agents.get if agents else None,
            agent_to=lambda label: out / f"agent_{_safe(label)}{AGENT_SUFFIX}",
            progress=progress,
            known=known_accuracies(rows),
            on_row=log.append,
        )
        result.resumed = len(rows)
        log.close()
        for timings, i, now in ((result.timings, 0, time.perf_counter), (result.cpu_timings, 1, time.process_time)):
            search_total = timings.pop("total_s")
            start = (t_start, c_start)[i]
            phases = {"prepare_s": prepared[i], "pretrain_s": pretrain[i], **timings}
            # the rest: compiling the archs, the W8A8 references, writing the files
            phases["other_s"] = max(0.0, search_total - sum(timings.values()))
            timings.clear()
            timings.update(phases)
            timings["total_s"] = now() - start  # the whole run, from the command's inputs to its files
        write_results(result, out, config, record)
    except OSError as err:
        where = err.filename or out
        raise CimdseError(
            f"{where}: cannot write ({err.strerror or first_line(err)}); the evaluations logged so far are kept: "
            "rerun the same command to resume"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            log.close()
    return result


CONFIG_NAME = "search_config.yaml"
#: what a search writes into its folder (``--overwrite`` removes these, and only these)
_RUN_FILES = ("history.csv", "pareto.csv", "summary.csv", "timing.csv", "best_policy.yaml", CONFIG_NAME)
_RUN_GLOBS = ("best_policy_*.yaml", f"agent_*{AGENT_SUFFIX}")


def _digest(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _run_record(
    config: SearchConfig,
    archs: Sequence[ArchSpec],
    from_ckpt: str | None,
    agent_from: str | None,
    policy_file: str | None,
    agents: dict[str, AgentFile],
) -> dict:
    """Everything that decides a search's results, as plain YAML data: its settings, the
    archs in full and the contents (digests) of the files it was given."""
    inputs: dict[str, object] = {
        "from": None if from_ckpt is None else _digest(from_ckpt),
        "policy": None if policy_file is None else _digest(policy_file),
        "agents": {label: _agent_digest(agent) for label, agent in agents.items()},
        "pretrained_agent": _pretrained_digest(config) if "ppo" in config.methods and not agents else None,
    }
    doc = {**config.as_dict(), "archs": [spec.model_dump(mode="json") for spec in archs], "inputs": inputs}
    return yaml.safe_load(yaml.safe_dump(doc, sort_keys=False))  # tuples as lists, as read back


def _pretrained_digest(config: SearchConfig) -> str | None:
    """The digest of the shipped pre-trained agent the ``ppo`` method starts from, if it does."""
    from cimdse.search.pretrain import pretrained_agent, pretrained_path

    if pretrained_agent(config.ppo, config.max_bits - config.min_bits + 1) is None:
        return None
    return _digest(pretrained_path())


def _agent_digest(agent: AgentFile) -> str:
    """A digest of an agent's settings and tensors."""
    import hashlib

    h = hashlib.sha256(agent.settings_json().encode())
    for name, t in sorted(agent.policy.items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _claim(out: Path, record: dict, overwrite: bool) -> None:
    """Refuse a folder holding a search with other settings (unless ``overwrite``:
    then remove its files); the same settings are resumed."""
    config = out / CONFIG_NAME
    held = config.is_file() or (out / "history.csv").is_file()
    if not held:
        return
    old = None
    if config.is_file():
        try:
            old = yaml.safe_load(config.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            old = None
    if isinstance(old, dict):
        old = {k: v for k, v in old.items() if k != "w8a8_val_acc"}
    if old == record:
        return
    if not overwrite:
        if isinstance(old, dict):
            diff = [k for k in dict.fromkeys([*record, *old]) if old.get(k) != record.get(k)]
            what = "other settings (" + ", ".join(diff[:6]) + ("" if len(diff) <= 6 else ", ...") + ")"
        else:
            what = "a search of unknown settings"
        raise CimdseError(
            f"{out}: holds {what}; rerun with its settings to resume it, or give another --out, or --overwrite"
        )
    try:
        for name in _RUN_FILES:
            (out / name).unlink(missing_ok=True)
        for pattern in _RUN_GLOBS:
            for path in out.glob(pattern):
                path.unlink()
    except OSError as err:
        raise CimdseError(f"{out}: cannot remove the earlier search's files ({err.strerror})") from None


def _read_agents(agent_from: str | None, archs: Sequence[ArchSpec], config: SearchConfig) -> dict[str, AgentFile]:
    """The agent to continue from per arch label: ``--agent-from`` a file (every arch)
    or a folder (``agent_<arch>.pt`` each); read and checked against the search now."""
    if agent_from is None:
        return {}
    if "ppo" not in config.methods:
        raise CimdseError("--agent-from: the agent is PPO's, and --methods has no ppo")
    src = Path(agent_from)
    if not src.exists():
        raise CimdseError(f"{src}: no such agent file or folder")
    n_choices = config.max_bits - config.min_bits + 1
    agents: dict[str, AgentFile] = {}
    for label in unique_labels(archs):
        path = src if src.is_file() else src / f"agent_{_safe(label)}{AGENT_SUFFIX}"
        if not src.is_file() and not path.is_file():
            old = path.with_suffix(".zip")
            why = f"; {old.name} is an older cimdse's stable-baselines3 agent, not loaded" if old.exists() else ""
            raise CimdseError(f"{src}: has no agent for arch {label!r} ({path.name}){why}")
        agent = read_agent(path)
        if (agent.obs_dim, agent.n_choices) != (AGENT_OBS_DIM, n_choices):
            raise CimdseError(
                f"{path}: the agent does not fit this search (trained on {agent.obs_dim} features and "
                f"{agent.n_choices} widths per choice; this search has {AGENT_OBS_DIM} and {n_choices})"
            )
        agents[label] = agent
    return agents


def _safe(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label)


def write_results(result: SearchResult, out: Path, config: SearchConfig, record: dict | None = None) -> None:
    """The run's files, each written atomically (the folder is created if need be);
    ``record``: the settings kept in search_config.yaml (default: ``config``'s)."""
    out = output_dir(out)
    write_csv(result.history, out / "history.csv")
    write_csv(result.pareto, out / "pareto.csv")
    write_csv(result.summary, out / "summary.csv")
    for label, best in result.best.items():
        save_policy(list(best["policy"].values()), list(best["policy"]), out / f"best_policy_{_safe(label)}.yaml")
    first = next(iter(result.best))
    # top-level ``policy`` (first arch) keeps the file readable by policy readers and `cimdse report`
    doc = {"arch": first, "policy": result.best[first]["policy"], "archs": result.best}
    write_text(yaml.safe_dump(doc, sort_keys=False), out / "best_policy.yaml")
    timing = pd.DataFrame(
        [
            {"phase": k.removesuffix("_s"), "seconds": v, "cpu_seconds": result.cpu_timings.get(k, float("nan"))}
            for k, v in result.timings.items()
        ]
    )
    write_csv(timing, out / "timing.csv")
    meta = {**(record if record is not None else config.as_dict()), "w8a8_val_acc": result.ref_val_acc}
    write_text(yaml.safe_dump(meta, sort_keys=False), out / "search_config.yaml")


def sweep_point(
    model_ref: str, input_shape: Sequence[int] | None, arch: ArchSpec, options: dict, out_dir: str | Path
) -> dict:
    """One point of a ``cimdse sweep`` with a ``search:`` section: the full search on
    ``arch`` into ``out_dir``; ``options`` are :class:`SearchConfig` fields (``episodes``,
    ``dataset``, ``max_acc_drop``, ...). Returns the best policy's costs, its
    validation accuracy and the path of its policy file."""
    config = sweep_options(model_ref, options)
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
