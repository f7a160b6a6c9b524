"""The accuracy evaluator a search uses: quantize the pre-trained float model at a
policy (folded and calibrated once, scales cached per (layer, bits): see
:class:`cimdse.quant.PolicyEvaluator`), optionally fine-tune a few epochs, and
measure the validation split, with exact fake quantization or on an arch's crossbar
model (hardware-accurate: ADC resolution and non-idealities included, slower).

Deterministic for a given seed, so a cached accuracy is the accuracy.
"""

from __future__ import annotations

import numpy as np
from torch import nn

from cimdse.arch import ArchSpec
from cimdse.data import Splits
from cimdse.quant.train import QAT_EPOCHS, PolicyEvaluator, accuracy, finetune

__all__ = ["QATAccuracy", "final_finetune"]


class QATAccuracy:
    """Validation accuracy at a policy after ``finetune_epochs`` of QAT.

    :param hardware: measure on this arch's crossbar model; None: fake quantization,
        which does not depend on the arch, so one instance (and its cache) serves all.
    """

    def __init__(
        self,
        float_model: nn.Module,
        splits: Splits,
        finetune_epochs: int = 0,
        seed: int = 0,
        hardware: ArchSpec | None = None,
    ) -> None:
        self.splits = splits
        self.finetune_epochs = finetune_epochs
        self.seed = seed
        self.hardware = hardware
        self.policy_evaluator = PolicyEvaluator(float_model, splits, seed)

    @property
    def arch_dependent(self) -> bool:
        return self.hardware is not None

    def __call__(self, policy: np.ndarray) -> float:
        return self.policy_evaluator(np.asarray(policy), self.finetune_epochs, self.seed, self.hardware)


def final_finetune(
    evaluator: QATAccuracy, policy: np.ndarray, epochs: int = QAT_EPOCHS, seed: int = 0
) -> tuple[float, float]:
    """(val, test) accuracy of ``policy`` after a full QAT fine-tune from the float
    model (fake quantization: what the training command reports)."""
    qmodel = evaluator.policy_evaluator.prepared.quantize(np.asarray(policy))
    if epochs > 0:
        finetune(qmodel, evaluator.splits, epochs, seed)
    return accuracy(qmodel, evaluator.splits.val), accuracy(qmodel, evaluator.splits.test)
