"""What a search is asked to do (:class:`SearchConfig`, the ``cimdse search``
options), how it reports progress (:class:`SearchEvent`) and the columns of its
tables. Checked in full before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from cimdse.errors import CimdseError
from cimdse.policy import check_search_range
from cimdse.search.agent import PPOConfig
from cimdse.search.baselines import UNIFORM_BITS
from cimdse.search.reward import REWARDS

__all__ = [
    "DATASET_DEFAULTS",
    "DEFAULT_METHODS",
    "HISTORY_COLUMNS",
    "SEARCH_METHODS",
    "SUMMARY_COLUMNS",
    "UNIFORM_BITS",
    "Progress",
    "SearchConfig",
    "SearchEvent",
]

#: methods that spend a budget of ``episodes`` distinct evaluations
SEARCH_METHODS = ("ppo", "tpe", "ilp", "random", "greedy")
DEFAULT_METHODS = SEARCH_METHODS

HISTORY_COLUMNS = ["episode", "method", "arch", "policy", "latency_s", "speedup_vs_w8a8", "val_acc", "reward"]
SUMMARY_COLUMNS = [
    "arch",
    "method",
    "evaluations",
    "front_size",
    "hypervolume",
    "front_resident",
    "rank",
    "speedup_vs_w8a8",
    "resident",
    "val_acc",
    "final_val_acc",
    "within_bound",
    "test_acc",
    "acc_drop_pp",
    "fq_final_val_acc",
    "fq_test_acc",
]

#: budgets left unset take these, per dataset (``*``: any other); sized so that the
#: default search fits in minutes on two cores (benchmarks/RESULTS.md): MNIST-1D's
#: 10,000 training signals make a QAT epoch ~3 s, its 2,000 validation signals an
#: evaluation ~0.2 s
DATASET_DEFAULTS: dict[str, dict[str, int]] = {
    "*": {"episodes": 300, "pretrain_epochs": 40, "final_epochs": 15, "final_top_k": 3},
    "mnist1d": {"episodes": 200, "pretrain_epochs": 20, "final_epochs": 4, "final_top_k": 2},
}


@dataclass(frozen=True)
class SearchConfig:
    """Settings of a search (the ``cimdse search`` options).

    :param model: zoo name or ``file.py:factory``; None: the dataset's default zoo model
    Budgets left None take the dataset's :data:`DATASET_DEFAULTS`.

    :param episodes: budget of every searching method: distinct policies evaluated
    :param max_acc_drop: accuracy bound, in pp below the W8A8 model's validation accuracy
    :param finetune_epochs: QAT epochs inside each evaluation (0: calibrate only)
    :param finetune_within_pp: with ``finetune_epochs``, fine-tune only the policies whose
        calibration-only accuracy is at most this many pp below the calibration-only
        W8A8 one (None: every policy); see :class:`cimdse.search.accuracy.QATAccuracy`
    :param final_epochs: QAT epochs of the final fine-tune of each method's top policies
    :param final_top_k: how many of each method's highest-reward policies get the final
        fine-tune; the fastest within the bound on validation is the method's result
    :param pretrain_epochs: float pre-training epochs (when no float model is given)
    :param accuracy: ``fake-quant`` or ``hardware`` (the arch's crossbar model, in the
        search and in the final fine-tune's reported accuracies)
    :param hardware_aware: with ``accuracy="hardware"``, the final fine-tune is ADC-aware
        QAT on each arch's crossbar model (one fine-tune per arch and policy) instead of
        one fake-quant fine-tune measured on every arch
    :param methods: which searching methods run (:data:`SEARCH_METHODS`); uniform k/k always do
    :param reward: ``cim-aq`` (CIM-AQ's later reward) or ``haq`` (its earlier one), see
        :mod:`cimdse.search.reward`
    """

    model: str | None = None
    dataset: str = "digits"
    data_dir: str | None = None
    episodes: int = None  # type: ignore[assignment]  # None: the dataset's default, see DATASET_DEFAULTS
    max_acc_drop: float = 0.5
    finetune_epochs: int = 0
    finetune_within_pp: float | None = None
    final_epochs: int = None  # type: ignore[assignment]
    final_top_k: int = None  # type: ignore[assignment]
    pretrain_epochs: int = None  # type: ignore[assignment]
    seed: int = 0
    min_bits: int = 2
    max_bits: int = 8
    first_last_8bit: bool = False
    weight_cell_multiple: bool = False
    accuracy: Literal["fake-quant", "hardware"] = "fake-quant"
    hardware_aware: bool = False
    methods: tuple[str, ...] = DEFAULT_METHODS
    reward: str = "cim-aq"
    ppo: PPOConfig = field(default_factory=PPOConfig)

    def __post_init__(self) -> None:
        if self.model is None:
            from cimdse.models import DEFAULT_MODEL, default_model

            model = default_model(self.dataset)
            if model is None:
                raise CimdseError(
                    f"--dataset {self.dataset}: give --model (zoo defaults exist for {', '.join(DEFAULT_MODEL)})"
                )
            object.__setattr__(self, "model", model)
        defaults = DATASET_DEFAULTS.get(self.dataset.partition(":")[0].lower(), DATASET_DEFAULTS["*"])
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if self.episodes < 1:
            raise CimdseError(f"--episodes {self.episodes}: the budget must be at least 1 evaluation per method")
        if not (self.max_acc_drop >= 0 and math.isfinite(self.max_acc_drop)):
            raise CimdseError(f"--max-acc-drop {self.max_acc_drop}: must be a finite number of pp >= 0")
        for name in ("finetune_epochs", "final_epochs", "pretrain_epochs"):
            if getattr(self, name) < 0:
                raise CimdseError(f"--{name.replace('_', '-')} must be >= 0")
        if self.finetune_within_pp is not None and not self.finetune_within_pp >= 0:
            raise CimdseError(f"--finetune-within {self.finetune_within_pp}: must be a number of pp >= 0")
        if self.final_top_k < 1:
            raise CimdseError(f"--final-top-k {self.final_top_k}: must be at least 1")
        check_search_range(self.min_bits, self.max_bits)
        unknown = [m for m in self.methods if m not in SEARCH_METHODS]
        if unknown:
            raise CimdseError(f"--methods: unknown {unknown}; choose from {', '.join(SEARCH_METHODS)}")
        if len(set(self.methods)) != len(self.methods):
            raise CimdseError(f"--methods {','.join(self.methods)}: a method is named twice")
        if self.accuracy not in ("fake-quant", "hardware"):
            raise CimdseError(f"--accuracy {self.accuracy!r}: fake-quant or hardware")
        if self.hardware_aware and self.accuracy != "hardware":
            raise CimdseError("--hardware-aware needs --accuracy hardware")
        if self.reward not in REWARDS:
            raise CimdseError(f"--reward {self.reward!r}: choose from {', '.join(REWARDS)}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        d["ppo"] = self.ppo.as_dict()
        return d


@dataclass(frozen=True)
class SearchEvent:
    """Progress: ``phase`` is ``pretrain`` (per epoch), ``search`` (per new policy) or
    ``finetune`` (per final fine-tune); ``done`` of ``total`` in that phase."""

    phase: str
    done: int
    total: int
    arch: str = ""
    method: str = ""
    best_speedup: float | None = None


Progress = Callable[[SearchEvent], None]
