"""``cimdse train`` (float pre-training, then QAT at a policy) and ``cimdse evaluate``
(fake-quant and hardware-accurate accuracy of a checkpoint on an architecture)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from cimdse.cli.common import add_arch_options, add_seed_option
from cimdse.data import DATASETS
from cimdse.errors import CimdseError
from cimdse.quant.defaults import PRETRAIN_EPOCHS, QAT_EPOCHS

# torch, the trainer and the crossbar model are imported when a command runs (below),
# not to parse its arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model: float pre-training, then quantization-aware training at a policy",
        description="Float pre-training, then QAT at --bits or --policy. Writes OUT/metrics.csv "
        "(a row per epoch) and OUT/checkpoint.pt.",
    )
    p.add_argument(
        "--model",
        help="zoo model (e.g. lenet) or path/to/file.py:factory; default: the checkpoint's, else the embedded "
        "dataset's own (lenet on digits, cnn1d on mnist1d)",
    )
    p.add_argument("--dataset", default=None, help=f"one of {', '.join(DATASETS)} (default digits)")
    p.add_argument("--data-dir", default=None, help="folder with the dataset's files (all but digits)")
    bits = p.add_mutually_exclusive_group()
    bits.add_argument("--bits", metavar="W,A", help="uniform weight and activation bits, e.g. 4,4")
    bits.add_argument("--policy", metavar="FILE", help="per-layer policy file (YAML/JSON keyed by layer, or .npy)")
    p.add_argument("--epochs", type=int, default=None, help=f"float pre-training epochs (default {PRETRAIN_EPOCHS})")
    p.add_argument("--qat-epochs", type=int, default=QAT_EPOCHS, help=f"QAT epochs (default {QAT_EPOCHS})")
    p.add_argument("--from", dest="from_ckpt", metavar="CKPT", help="start from a checkpoint (skips pre-training)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--hardware-aware",
        action="store_true",
        help="QAT with the crossbar model of --arch in the forward pass (ADC rounding and saturation, "
        "non-idealities unless --ideal-devices), fake-quant gradients; also reports hardware accuracy",
    )
    p.add_argument(
        "--ideal-devices", action="store_true", help="with --hardware-aware: leave the arch's non-idealities out"
    )
    add_seed_option(p, 0, "seed of the weights, data order and calibration")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: best for small models)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arch_options(p, required=False)
    p.set_defaults(func=_train, arch=None)

    e = sub.add_parser(
        "evaluate",
        help="accuracy of a checkpoint: exact fake-quant, and on the crossbar model (--hardware)",
        description="Writes OUT/eval.csv (mode,accuracy,...) and OUT/predictions.csv.",
    )
    e.add_argument("--checkpoint", required=True, help="checkpoint.pt written by cimdse train")
    e.add_argument("--hardware", action="store_true", help="also run the crossbar model of --arch")
    e.add_argument("--split", choices=("test", "val", "train"), default="test")
    e.add_argument("--data-dir", default=None, help="override the checkpoint's data folder")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--threads", type=int, default=1)
    e.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    e.add_argument(
        "--backend",
        choices=("torch", "numpy"),
        default="torch",
        help="crossbar model implementation: torch (fast, default) or numpy (the reference); same results",
    )
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--quiet", action="store_true", help="no progress bar")
    add_arch_options(e, required=False)
    e.set_defaults(func=_evaluate, arch=None)


# ---------------------------------------------------------------- train
def _train(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch
    from tqdm import tqdm

    from cimdse import models
    from cimdse.cli.common import load_arch, output_dir, write_csv
    from cimdse.data import load_dataset
    from cimdse.policy import QUANT, load_policy, parse_bits, uniform_policy
    from cimdse.quant.apply import crossbar_layers, resolve_policy
    from cimdse.quant.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from cimdse.quant.export import export_model, layers_to_dicts
    from cimdse.quant.hardware import evaluate_hardware
    from cimdse.quant.train import (
        EpochMetrics,
        accuracy,
        check_model_fits,
        exact_accuracy,
        finetune,
        pretrain,
        quantize_for,
        resolve_device,
    )

    torch.set_num_threads(max(1, args.threads))
    if args.epochs is not None and args.epochs < 0 or args.qat_epochs < 0:
        raise CimdseError("--epochs and --qat-epochs must be >= 0")
    resolve_device(args.device)
    base = load_checkpoint(args.from_ckpt) if args.from_ckpt else None
    if base and args.model and args.model != base.model:
        raise CimdseError(f"--model {args.model!r} differs from the checkpoint's model {base.model!r}")
    dataset = args.dataset or (base.dataset if base else "digits")
    model_spec = args.model or (base.model if base else models.default_model(dataset))
    if model_spec is None:
        raise CimdseError(
            f"--dataset {dataset} has no default model: give --model (a zoo name or path/to/file.py:factory) "
            "or --from CKPT"
        )
    data_dir = args.data_dir or (base.data_dir if base and dataset == base.dataset else None)
    arch = load_arch(args.arch, args.overrides) if args.arch else None
    if args.hardware_aware and arch is None:
        raise CimdseError("--hardware-aware needs --arch (the crossbar model to train against)")
    splits = load_dataset(dataset, data_dir, seed=0)
    model = base.build() if base else models.load_model(model_spec, splits.num_classes, seed=args.seed)
    check_model_fits(model, splits, model_spec)
    names = base.layers if base else crossbar_layers(model, splits.input_shape)
    if args.bits:
        policy: dict[str, tuple[int, int]] | None = resolve_policy(
            uniform_policy(*parse_bits(args.bits, QUANT), len(names), QUANT), names
        )
    elif args.policy:
        policy = resolve_policy(load_policy(args.policy, names, QUANT), names)
    else:
        policy = base.policy if base else None
    if base and base.quantized and policy != base.policy:
        raise CimdseError("the checkpoint is quantized at another policy; start from a float checkpoint instead")
    pre_epochs = 0 if base else (PRETRAIN_EPOCHS if args.epochs is None else args.epochs)
    qat_epochs = args.qat_epochs if policy is not None else 0
    if args.hardware_aware and not qat_epochs:
        raise CimdseError("--hardware-aware trains a quantized model: give --bits or --policy and --qat-epochs > 0")
    out = output_dir(args.out)  # every input is valid: only now touch the file system

    rows: list[dict] = []
    bar = tqdm(total=pre_epochs + qat_epochs, desc="train", unit="epoch", file=sys.stderr, disable=args.quiet)

    def on_epoch(m: EpochMetrics) -> None:
        rows.append(m.row())
        bar.set_postfix(phase=m.phase, loss=f"{m.train_loss:.3f}", val=f"{m.val_acc:.3f}")
        bar.update(1)

    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    try:
        if pre_epochs:
            pretrain(model, splits, pre_epochs, args.seed, device=args.device, callback=on_epoch)
        if not (base and base.quantized):
            model.cpu()
            metrics |= {"float_val_acc": accuracy(model, splits.val), "float_test_acc": accuracy(model, splits.test)}
        if policy is not None and not (base and base.quantized):
            model = quantize_for(model, policy, splits, seed=args.seed)
            v, t = exact_accuracy(model, splits.val), exact_accuracy(model, splits.test)
            rows.append(EpochMetrics(0, "ptq", math.nan, v, t, math.nan, 0.0).row())
        if qat_epochs:
            hw = arch if args.hardware_aware else None
            nonideal = not args.ideal_devices
            finetune(
                model,
                splits,
                qat_epochs,
                args.seed,
                device=args.device,
                callback=on_epoch,
                hardware=hw,
                nonideal=nonideal,
            )
    finally:
        bar.close()
    model.cpu().eval()
    metrics |= {"val_acc": exact_accuracy(model, splits.val), "test_acc": exact_accuracy(model, splits.test)}
    if args.hardware_aware:
        hw_res = evaluate_hardware(model, splits.test, arch, device=args.device)
        metrics["hardware_test_acc"] = hw_res.hardware
    metrics["train_seconds"] = time.perf_counter() - t0
    ckpt = Checkpoint(
        model=model_spec,
        num_classes=splits.num_classes,
        input_shape=splits.input_shape,
        dataset=splits.name,
        data_dir=str(Path(data_dir).resolve()) if data_dir else None,
        seed=args.seed,
        layers=list(names),
        state_dict=model.state_dict(),
        policy=policy,
        export=layers_to_dicts(export_model(model)) if policy is not None else None,
        arch=arch.model_dump(mode="json") if arch else (base.arch if base else None),
        metrics=metrics,
    )
    write_csv(pd.DataFrame(rows, columns=list(EpochMetrics.__dataclass_fields__)), out / "metrics.csv")
    save_checkpoint(ckpt, out / "checkpoint.pt")
    what = "float" if policy is None else _policy_text(policy)
    hw_text = f", hardware test {metrics['hardware_test_acc']:.4f} on {arch.name}" if args.hardware_aware else ""
    print(
        f"{model_spec} on {splits.name} ({what}): val {metrics['val_acc']:.4f}, test {metrics['test_acc']:.4f}"
        f"{hw_text} in {metrics['train_seconds']:.1f} s"
    )
    print(f"wrote {out / 'metrics.csv'} and {out / 'checkpoint.pt'}")
    return 0


def _policy_text(policy: dict[str, tuple[int, int]]) -> str:
    pairs = set(policy.values())
    if len(pairs) == 1:
        w, a = next(iter(pairs))
        return f"W{w}A{a}"
    return "mixed " + " ".join(f"{w}/{a}" for w, a in policy.values())


# ---------------------------------------------------------------- evaluate
def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd
    import torch
    from tqdm import tqdm

    from cimdse.arch import apply_overrides, from_dict
    from cimdse.cli.common import load_arch, output_dir, write_csv
    from cimdse.data import load_dataset
    from cimdse.quant.checkpoint import load_checkpoint
    from cimdse.quant.hardware import evaluate_hardware
    from cimdse.quant.train import resolve_device

    torch.set_num_threads(max(1, args.threads))
    if args.batch_size < 1:
        raise CimdseError("--batch-size must be >= 1")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint)
    layers = ckpt.int_layers()
    if args.arch:
        arch = load_arch(args.arch, args.overrides)
    elif ckpt.arch is not None:
        arch = from_dict(apply_overrides(ckpt.arch, args.overrides), "checkpoint arch")
    else:
        arch = load_arch("demo", args.overrides)
    splits = load_dataset(ckpt.dataset, args.data_dir or ckpt.data_dir, seed=0)
    dataset = getattr(splits, args.split)
    qmodel = ckpt.build()
    out = output_dir(args.out)

    total = len(dataset) * (2 if args.hardware else 1)
    bar = tqdm(total=total, desc="evaluate", unit="sample", file=sys.stderr, disable=args.quiet)
    done = {"fake_quant": 0, "hardware": 0}

    def on_batch(mode: str, n: int) -> None:
        bar.set_postfix(mode=mode)
        bar.update(n - done[mode])
        done[mode] = n

    t0 = time.perf_counter()
    try:
        res = evaluate_hardware(
            qmodel,
            dataset,
            arch if args.hardware else None,
            layers,
            batch_size=args.batch_size,
            callback=on_batch,
            backend=args.backend,
            device=device,
        )
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    xb = arch.crossbar
    adc = "ideal" if xb.adc_bits is None else f"{xb.adc_bits}b {xb.adc_mode}"
    rows = [
        {
            "mode": "fake_quant",
            "accuracy": res.fake_quant,
            "samples": res.samples,
            "agreement": 1.0,
            "arch": "",
            "adc": "",
            "conductance_sigma": "",
        }
    ]
    if res.hardware is not None:
        rows.append(
            {
                "mode": "hardware",
                "accuracy": res.hardware,
                "samples": res.samples,
                "agreement": res.agreement,
                "arch": arch.name,
                "adc": adc,
                "conductance_sigma": xb.nonideal.conductance_sigma,
            }
        )
    preds = {"label": dataset.tensors[1].numpy(), "fake_quant": res.fake_pred}
    if res.hardware_pred is not None:
        preds["hardware"] = res.hardware_pred
    write_csv(pd.DataFrame(preds), out / "predictions.csv")
    write_csv(pd.DataFrame(rows), out / "eval.csv")
    line = f"{args.split} ({res.samples} samples): fake_quant {res.fake_quant:.4f}"
    if res.hardware is not None:
        line += f", hardware {res.hardware:.4f} on {arch.name} (ADC {adc}; agreement {res.agreement:.4f})"
    print(line + f" in {seconds:.1f} s")
    print(f"wrote {out / 'eval.csv'}")
    return 0
