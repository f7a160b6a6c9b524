"""Per-layer mixed-precision quantization: fake quantizers (LSQ), quantized crossbar
layers, BN folding, calibration, QAT, integer export and hardware-accurate inference.

The entry points the search uses are re-exported here::

    from cimdse.quant import pretrain, quantize_for, finetune, exact_accuracy, evaluate_policy

Names are imported on first use, so ``cimdse.quant.defaults`` stays free of torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

#: public name -> its module
_API = {
    "PreparedModel": "apply", "crossbar_layers": "apply", "fold_batchnorm": "apply", "quantize": "apply",
    "resolve_policy": "apply", "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint", "IntLayer": "export", "export_model": "export",
    "evaluate_hardware": "hardware", "integer_model": "hardware", "EpochMetrics": "train",
    "PolicyEvaluator": "train", "accuracy": "exact", "exact_accuracy": "exact", "exact_model": "exact",
    "evaluate_policy": "train", "finetune": "train",
    "pretrain": "train", "quantize_for": "train",
}  # fmt: skip

__all__ = [
    "Checkpoint",
    "EpochMetrics",
    "IntLayer",
    "PolicyEvaluator",
    "PreparedModel",
    "accuracy",
    "crossbar_layers",
    "evaluate_hardware",
    "evaluate_policy",
    "exact_accuracy",
    "exact_model",
    "export_model",
    "finetune",
    "fold_batchnorm",
    "integer_model",
    "load_checkpoint",
    "pretrain",
    "quantize",
    "quantize_for",
    "resolve_policy",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'cimdse.quant' has no attribute {name!r}")
    return getattr(import_module(f"cimdse.quant.{_API[name]}"), name)
