"""The real search: load the dataset, pre-train the float model once (or reuse
``OUT/float_model.pt`` or ``--from``), build the QAT accuracy evaluators, run
:func:`cimdse.search.core.search_archs` and write the files. Nothing here prints:
progress goes to a callback with :class:`SearchEvent` s.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from cimdse.arch import ArchSpec
from cimdse.compiler import compile_network, trace_spec
from cimdse.errors import CimdseError
from cimdse.files import output_dir, write_csv, write_text
from cimdse.policy import QUANT, load_policy, save_policy
from cimdse.search.config import Progress, SearchConfig, SearchEvent
from cimdse.search.core import SearchResult, search_archs
from cimdse.search.evaluator import AccuracyEvaluator
from cimdse.search.space import SearchSpace

__all__ = ["prepare", "run_search", "sweep_point", "write_results"]


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
    device: str = "cpu",
) -> SearchResult:
    """The full search with real QAT evaluations; writes its files into ``out``
    (created once the inputs are checked): history.csv, pareto.csv, summary.csv, best_policy.yaml,
    best_policy_<arch>.yaml, agent_<arch>.zip, timing.csv, search_config.yaml,
    float_model.pt (the pre-trained model, reused by a later run with the same settings).
    ``device``: where pre-training, fine-tunes and accuracy evaluations run."""
    from cimdse.search.accuracy import QATAccuracy, final_scores

    splits, network, user = prepare(config, archs, policy_file)
    agent_path = _agent_source(agent_from)
    given = _float_model(config, splits, None, from_ckpt, progress) if from_ckpt is not None else None
    out = output_dir(out)  # every input is valid: only now touch the file system
    float_model, pretrain_s = given or _float_model(config, splits, out, None, progress, device)

    def evaluator(hardware: ArchSpec | None) -> QATAccuracy:
        return QATAccuracy(
            float_model, splits, config.finetune_epochs, config.seed, hardware, config.finetune_within_pp, device
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
            fq, policy, targets, config.final_epochs, config.seed, config.hardware_aware
        ),
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
    """The run's files, each written atomically (the folder is created if need be)."""
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
