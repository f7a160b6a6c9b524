"""Exact evaluation: the accuracy cimdse reports for a quantized model is its integer
model's.

Training steps run the float32 fake-quant forward (straight-through gradients), but
its value is not the integer model's: float32 rounding of ``x / s_x`` or of a layer's
sum can put a value on the other side of a quantization boundary, that activation
code differs by one, and the difference spreads through the following layers (at
W8A8, 1,301 of 24.4 M codes differ on a trained cnn1d on MNIST-1D, and 124,011 of
16.0 M on a resnet20, where 2 of 301 predictions change:
``benchmarks/bench_accuracy_exact.py``). So every accuracy reported for a quantized
model (the search's policy accuracies, ``train``'s epoch and final metrics,
``evaluate``) comes from here: the integer model
(:func:`cimdse.quant.hardware.integer_model`), where each crossbar layer's input is
requantized to integer codes in float64 (``clamp(round(x / s_x))``), the integer
product is exact (:func:`cimdse.quant.export.exact_product`: float32 where a bound
proves every partial sum exact; an evaluation takes 1.1-1.5x a fake-quant one), and
the dequantization, bias and the digital ops between layers run in float64. With an
ideal ADC the crossbar model gives the same logits bit for bit; with an arch, the
crossbar model of that arch is evaluated instead. A model without quantized layers
(float pre-training) is evaluated as it is.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.utils.data import TensorDataset

from cimdse.arch import ArchSpec, CrossbarSpec
from cimdse.quant.apply import quant_layers
from cimdse.quant.hardware import integer_model

__all__ = ["EVAL_BATCH", "accuracy", "exact_accuracy", "exact_model"]

#: samples per evaluation batch: smaller batches keep the float64 activations of the
#: integer model in cache (at 1,024 an evaluation of cnn1d or resnet20 took ~1.3x longer)
EVAL_BATCH = 256


def _device(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


@torch.no_grad()
def accuracy(model: nn.Module, dataset: TensorDataset, *, batch_size: int = EVAL_BATCH) -> float:
    """Top-1 accuracy of ``model`` as it runs (put in eval mode) on ``dataset``; NaN
    when empty. For a quantized model that is the fake-quant value: report
    :func:`exact_accuracy` instead."""
    x_all, y_all = dataset.tensors
    if len(y_all) == 0:
        return math.nan
    model.eval()
    dev = _device(model)
    correct = 0
    for i in range(0, len(y_all), batch_size):
        out = model(x_all[i : i + batch_size].to(dev))
        correct += int((out.argmax(dim=1).cpu() == y_all[i : i + batch_size]).sum())
    return correct / len(y_all)


def exact_model(
    model: nn.Module,
    arch: ArchSpec | CrossbarSpec | None = None,
    *,
    device: str | torch.device | None = None,
    in_place: bool = False,
) -> nn.Module:
    """What a reported accuracy runs: the integer model of a quantized ``model`` (on
    the crossbar model of ``arch`` when given), on ``device`` (default: the model's);
    a model without quantized layers itself. ``in_place``: made from ``model`` itself,
    not a copy (for a model evaluated once: saves the copy)."""
    if not quant_layers(model):
        return model
    dev = device if device is not None else _device(model)
    return integer_model(model, arch=arch, device=dev, in_place=in_place)


def exact_accuracy(
    model: nn.Module,
    dataset: TensorDataset,
    arch: ArchSpec | CrossbarSpec | None = None,
    *,
    batch_size: int = EVAL_BATCH,
    device: str | torch.device | None = None,
    in_place: bool = False,
) -> float:
    """Top-1 accuracy of the integer model of ``model`` (:func:`exact_model`) on
    ``dataset``: the accuracy to report for a quantized model."""
    return accuracy(exact_model(model, arch, device=device, in_place=in_place), dataset, batch_size=batch_size)
