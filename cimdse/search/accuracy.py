"""The accuracy evaluator a search uses: quantize the pre-trained float model at a
policy (folded and calibrated once, scales cached per (layer, bits): see
:class:`cimdse.quant.PolicyEvaluator`), optionally fine-tune a few epochs, and
measure the validation split on the integer model (:mod:`cimdse.quant.exact`: what
the crossbar computes with an ideal ADC, bit for bit) or on an arch's crossbar model
(hardware-accurate: ADC resolution and non-idealities included, slower).

Calibration alone is pessimistic at low bits (a few QAT epochs recover most of the
loss), but a fine-tune costs ~30x a calibrated evaluation. ``finetune_within_pp``
spends it only where it can matter: a policy whose calibration-only accuracy is more
than that many pp below the calibration-only W8A8 accuracy keeps its calibration-only
figure (it is far outside any bound a fine-tune could bring it back to).

Deterministic for a given seed, so a cached accuracy is the accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from cimdse.arch import ArchSpec
from cimdse.data import Splits
from cimdse.quant.exact import accuracy, exact_model
from cimdse.quant.train import QAT_EPOCHS, PolicyEvaluator, finetune
from cimdse.search.finals import FinalScores

__all__ = ["QATAccuracy", "final_scores"]


class QATAccuracy:
    """Validation accuracy at a policy after ``finetune_epochs`` of QAT.

    :param hardware: measure on this arch's crossbar model; None: the integer model
        (an ideal ADC), which does not depend on the arch, so one instance (and its
        cache) serves all.
    :param finetune_within_pp: fine-tune only the policies whose calibration-only
        accuracy is at most this many pp below the calibration-only W8A8 one (the
        others report their calibration-only accuracy); None: fine-tune every policy.
    :param device: where fine-tunes and evaluations run (cpu or cuda).
    """

    def __init__(
        self,
        float_model: nn.Module,
        splits: Splits,
        finetune_epochs: int = 0,
        seed: int = 0,
        hardware: ArchSpec | None = None,
        finetune_within_pp: float | None = None,
        device: str = "cpu",
    ) -> None:
        self.splits = splits
        self.finetune_epochs = finetune_epochs
        self.seed = seed
        self.hardware = hardware
        self.finetune_within_pp = finetune_within_pp
        self.device = device
        self.policy_evaluator = PolicyEvaluator(float_model, splits, seed, device)
        self.screened_out = 0  # policies not fine-tuned because calibration put them too far below
        self._calibrated_ref: float | None = None

    @property
    def arch_dependent(self) -> bool:
        return self.hardware is not None

    def calibrated(self, policy: np.ndarray) -> float:
        """Validation accuracy after calibration only (no fine-tune)."""
        return self.policy_evaluator(np.asarray(policy), 0, self.seed, self.hardware)

    def __call__(self, policy: np.ndarray) -> float:
        policy = np.asarray(policy)
        if self.finetune_epochs > 0 and self.finetune_within_pp is not None:
            if self._calibrated_ref is None:
                self._calibrated_ref = self.calibrated(np.full((len(self.policy_evaluator.layer_names), 2), 8))
            calibrated = self.calibrated(policy)
            if 100.0 * (self._calibrated_ref - calibrated) > self.finetune_within_pp:
                self.screened_out += 1
                return calibrated
        return self.policy_evaluator(policy, self.finetune_epochs, self.seed, self.hardware)


def final_scores(
    evaluator: QATAccuracy,
    policy: np.ndarray,
    targets: Sequence[ArchSpec | None],
    epochs: int = QAT_EPOCHS,
    seed: int = 0,
    hardware_aware: bool = False,
) -> list[FinalScores]:
    """Fine-tune ``policy`` (a full QAT from the float model), then score the model per
    target: on an arch's crossbar model (val and test, the model's own integer export
    programmed into the arch's crossbars), or on the integer model (None, an ideal
    ADC). The integer model's accuracies (``fq_*``) are in every entry.

    One fake-quant fine-tune serves every target; with ``hardware_aware`` each arch
    target gets its own ADC-aware fine-tune instead (its crossbar model in the forward
    pass, :func:`cimdse.quant.finetune` with ``hardware``)."""
    splits = evaluator.splits

    def tuned(hardware: ArchSpec | None):
        qmodel = evaluator.policy_evaluator.prepared.quantize(np.asarray(policy))
        if epochs > 0:
            finetune(qmodel, splits, epochs, seed, hardware=hardware, device=evaluator.device)
        qmodel.to(evaluator.device)
        exact = exact_model(qmodel)
        return qmodel, accuracy(exact, splits.val), accuracy(exact, splits.test)

    shared = None
    out = []
    for target in targets:
        if hardware_aware and target is not None:
            qmodel, fq_val, fq_test = tuned(target)
        else:
            shared = shared or tuned(None)
            qmodel, fq_val, fq_test = shared
        if target is None:
            out.append(FinalScores(fq_val, fq_test, fq_val, fq_test))
        else:
            hw = exact_model(qmodel, target)
            out.append(FinalScores(accuracy(hw, splits.val), accuracy(hw, splits.test), fq_val, fq_test))
    return out
