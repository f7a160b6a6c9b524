"""Per-layer mixed-precision quantization: fake quantizers (LSQ), quantized crossbar
layers, BN folding, calibration, QAT, integer export and hardware-accurate inference.

The entry points the search uses are re-exported here::

    from cimdse.quant import pretrain, quantize_for, finetune, exact_accuracy, evaluate_policy
"""

from cimdse.quant.apply import PreparedModel, crossbar_layers, fold_batchnorm, quantize, resolve_policy
from cimdse.quant.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from cimdse.quant.exact import exact_accuracy, exact_model
from cimdse.quant.export import IntLayer, export_model
from cimdse.quant.hardware import evaluate_hardware, integer_model
from cimdse.quant.train import (
    EpochMetrics,
    PolicyEvaluator,
    accuracy,
    evaluate_policy,
    finetune,
    pretrain,
    quantize_for,
)

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
