"""Training: float pre-training, quantization-aware fine-tuning (QAT), accuracy, and
the fast policy evaluation the search calls.

Everything is seeded: the same seed, data and thread count give the same metrics.
Nothing here prints; progress goes to an optional ``callback`` called once per
epoch with an :class:`EpochMetrics`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from cimdse.arch import ArchSpec, CrossbarSpec
from cimdse.data import Splits
from cimdse.errors import CimdseError, first_line
from cimdse.quant.apply import Policy, PreparedModel
from cimdse.quant.defaults import PRETRAIN_EPOCHS, QAT_EPOCHS
from cimdse.quant.exact import accuracy, exact_accuracy, exact_model
from cimdse.quant.hardware import hardware_aware, training_spec

__all__ = [
    "EpochMetrics",
    "PolicyEvaluator",
    "accuracy",
    "calibration_inputs",
    "exact_accuracy",
    "evaluate_policy",
    "finetune",
    "pretrain",
    "quantize_for",
    "resolve_device",
]

CALIB_SAMPLES = 256


@dataclass(frozen=True)
class EpochMetrics:
    """One row of ``metrics.csv``; ``epoch`` 0 of phase ``ptq`` is the calibrated
    model before fine-tuning."""

    epoch: int
    phase: str  # "float", "ptq" or "qat"
    train_loss: float
    val_acc: float
    test_acc: float
    lr: float
    seconds: float

    def row(self) -> dict:
        return asdict(self)


Callback = Callable[[EpochMetrics], None]


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CimdseError(f"--device {device!r}: expected cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CimdseError("--device cuda: no CUDA device is available here (use --device cpu)")
    return dev


def check_model_fits(model: nn.Module, splits: Splits, spec: str) -> None:
    """Fail early, with one clear message, when a model does not take the dataset's
    inputs or does not give one logit per class."""
    try:
        with torch.no_grad():
            out = model.eval()(splits.train.tensors[0][:2])
    except Exception as err:
        raise CimdseError(
            f"model {spec!r} does not run on {splits.name} inputs {splits.input_shape} "
            f"({type(err).__name__}: {first_line(err)}); use a model made for that shape"
        ) from None
    if out.dim() != 2 or out.shape[1] != splits.num_classes:
        raise CimdseError(
            f"model {spec!r} gives {tuple(out.shape[1:])} outputs; {splits.name} has {splits.num_classes} classes"
        )


def calibration_inputs(splits: Splits, n: int = CALIB_SAMPLES, seed: int = 0) -> torch.Tensor:
    """A seeded sample of ``n`` training inputs for activation calibration."""
    x = splits.train.tensors[0]
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def _train(
    model: nn.Module,
    splits: Splits,
    epochs: int,
    seed: int,
    lr: float,
    phase: str,
    batch_size: int,
    weight_decay: float,
    device: str | torch.device,
    callback: Callback | None,
    arch: CrossbarSpec | None = None,
) -> nn.Module:
    """Adam with a cosine schedule; metrics after every epoch, on the exact model
    (:func:`cimdse.quant.exact.exact_model`, on the crossbar model of ``arch`` when
    given)."""
    dev = resolve_device(device)
    model.to(dev)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(splits.train, batch_size=batch_size, shuffle=True, generator=gen)
    decay = [p for p in model.parameters() if p.dim() > 1]  # weights; not biases nor LSQ scales
    other = [p for p in model.parameters() if p.dim() <= 1]
    opt = torch.optim.Adam([{"params": decay, "weight_decay": weight_decay}, {"params": other}], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs * len(loader)))
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for x, y in loader:
            x, y = x.to(dev), y.to(dev)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        if callback is not None:
            exact = exact_model(model, arch)
            callback(
                EpochMetrics(
                    epoch,
                    phase,
                    total / max(count, 1),
                    accuracy(exact, splits.val),
                    accuracy(exact, splits.test),
                    float(sched.get_last_lr()[0]),
                    time.perf_counter() - t0,
                )
            )
    return model.eval()


def pretrain(
    model: nn.Module,
    splits: Splits,
    epochs: int = PRETRAIN_EPOCHS,
    seed: int = 0,
    *,
    lr: float = 5e-3,
    batch_size: int = 64,
    weight_decay: float = 5e-4,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
) -> nn.Module:
    """Float training of ``model`` in place; returns it in eval mode."""
    return _train(model, splits, epochs, seed, lr, "float", batch_size, weight_decay, device, callback)


def finetune(
    qmodel: nn.Module,
    splits: Splits,
    epochs: int = QAT_EPOCHS,
    seed: int = 0,
    *,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
    hardware: ArchSpec | CrossbarSpec | None = None,
    nonideal: bool = True,
) -> nn.Module:
    """Quantization-aware training of a quantized model in place (weights and LSQ
    scales); returns it in eval mode.

    ``hardware``: hardware-aware QAT (phase ``hw-qat``): the forward pass runs the
    crossbar model of this arch (ADC rounding and saturation; with ``nonideal`` its
    conductance variation and read noise, re-drawn each step), the backward pass the
    fake-quant gradient (:func:`cimdse.quant.hardware.hardware_aware`); the epoch
    metrics are then accuracies on that crossbar model (the integer model run on it).
    Without ``hardware`` the epoch metrics are the integer model's accuracies."""
    if hardware is None:
        return _train(qmodel, splits, epochs, seed, lr, "qat", batch_size, weight_decay, device, callback)
    hardware_aware(qmodel, hardware, nonideal=nonideal)
    spec = training_spec(hardware, nonideal)
    try:
        return _train(qmodel, splits, epochs, seed, lr, "hw-qat", batch_size, weight_decay, device, callback, spec)
    finally:
        hardware_aware(qmodel, None)


def quantize_for(model: nn.Module, policy: Policy, splits: Splits, seed: int = 0) -> nn.Module:
    """``model`` quantized at ``policy`` and calibrated on training inputs."""
    prepared = PreparedModel(model.cpu(), calibration_inputs(splits, seed=seed))
    return prepared.quantize(policy)


# ---------------------------------------------------------------- fast policy evaluation
class PolicyEvaluator:
    """Validation accuracy of one float model at many policies: BN folding and
    calibration are done once, scales are cached per (layer, bits)."""

    def __init__(
        self, float_model: nn.Module, splits: Splits, seed: int = 0, device: str | torch.device = "cpu"
    ) -> None:
        self.splits = splits
        self.seed = seed
        self.device = device
        self.prepared = PreparedModel(float_model.cpu(), calibration_inputs(splits, seed=seed))

    @property
    def layer_names(self) -> list[str]:
        """The crossbar layers in policy order (the compiler's)."""
        return list(self.prepared.names)

    def __call__(
        self,
        policy: Policy,
        finetune_epochs: int = 0,
        seed: int | None = None,
        hardware: ArchSpec | CrossbarSpec | None = None,
    ) -> float:
        qmodel = self.prepared.quantize(policy).to(self.device)
        if finetune_epochs > 0:
            seed = self.seed if seed is None else seed
            finetune(qmodel, self.splits, finetune_epochs, seed, device=self.device)
        return exact_accuracy(qmodel, self.splits.val, hardware, in_place=True)  # qmodel is this call's own


_EVALUATORS: weakref.WeakKeyDictionary[nn.Module, tuple[tuple, PolicyEvaluator]] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module, splits: Splits, seed: int) -> tuple:
    params = tuple((p.data_ptr(), p._version) for p in model.state_dict().values())
    return (id(splits), seed, params)


def evaluate_policy(
    float_model: nn.Module,
    policy: Policy,
    splits: Splits,
    finetune_epochs: int = 0,
    seed: int = 0,
    hardware: ArchSpec | CrossbarSpec | None = None,
) -> float:
    """Validation accuracy of ``float_model`` quantized at ``policy`` (calibrated on
    training inputs, optionally fine-tuned for a few epochs; measured on the integer
    model, :func:`cimdse.quant.exact.exact_accuracy`, run on the crossbar model of
    ``hardware`` when given). Repeated calls on
    the same model and splits reuse the calibration; a changed model is re-calibrated.
    ``float_model`` itself is never modified."""
    key = _fingerprint(float_model, splits, seed)
    cached = _EVALUATORS.get(float_model)
    if cached is None or cached[0] != key:
        cached = (key, PolicyEvaluator(float_model, splits, seed))
        _EVALUATORS[float_model] = cached
    return cached[1](policy, finetune_epochs, seed, hardware)
