"""The accuracy evaluators a search uses: quantize the pre-trained float model at a
policy (calibrated once per (layer, bits), see :class:`cimdse.quant.train.PolicyEvaluator`),
optionally fine-tune a few epochs, and measure the validation split, either with
exact fake quantization or on the arch's crossbar model (hardware-accurate: ADC
resolution and non-idealities included, much slower).

Both are deterministic for a given seed, so a cached accuracy is the accuracy.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from cimdse.arch import ArchSpec
from cimdse.data import Splits
from cimdse.quant.train import QAT_EPOCHS, PolicyEvaluator, accuracy, finetune

__all__ = ["FakeQuantAccuracy", "HardwareAccuracy", "final_finetune"]


class FakeQuantAccuracy:
    """Validation accuracy of the fake-quantized model, after ``finetune_epochs`` of QAT.

    Does not depend on the arch: one instance (and its cache) serves all archs.
    """

    arch_dependent = False

    def __init__(self, float_model: nn.Module, splits: Splits, finetune_epochs: int = 0, seed: int = 0) -> None:
        self.splits = splits
        self.finetune_epochs = finetune_epochs
        self.seed = seed
        self._policy_eval = PolicyEvaluator(float_model, splits, seed)

    def quantized(self, policy: np.ndarray) -> nn.Module:
        qmodel = self._policy_eval.prepared.quantize(np.asarray(policy))
        if self.finetune_epochs > 0:
            finetune(qmodel, self.splits, self.finetune_epochs, self.seed)
        return qmodel

    def __call__(self, policy: np.ndarray) -> float:
        return accuracy(self.quantized(policy), self.splits.val)


class HardwareAccuracy(FakeQuantAccuracy):
    """Validation accuracy on the crossbar model of ``arch`` (integer pipeline, ADC,
    optional non-idealities); one instance per arch."""

    arch_dependent = True

    def __init__(
        self, float_model: nn.Module, splits: Splits, arch: ArchSpec, finetune_epochs: int = 0, seed: int = 0
    ) -> None:
        super().__init__(float_model, splits, finetune_epochs, seed)
        self.arch = arch

    def __call__(self, policy: np.ndarray) -> float:
        from cimdse.quant.hardware import integer_model, predict

        qmodel = self.quantized(policy)
        val = self.splits.val
        pred = predict(integer_model(qmodel, None, self.arch), val)
        labels = val.tensors[1].numpy()
        return float((pred == labels).mean()) if len(labels) else float("nan")


def final_finetune(
    evaluator: FakeQuantAccuracy, policy: np.ndarray, epochs: int = QAT_EPOCHS, seed: int = 0
) -> tuple[float, float]:
    """(val, test) accuracy of ``policy`` after a full QAT fine-tune from the float model."""
    qmodel = evaluator._policy_eval.prepared.quantize(np.asarray(policy))
    if epochs > 0:
        finetune(qmodel, evaluator.splits, epochs, seed)
    return accuracy(qmodel, evaluator.splits.val), accuracy(qmodel, evaluator.splits.test)
