"""What a search is asked to do (:class:`SearchConfig`, the ``cimdse search``
options), how it reports progress (:class:`SearchEvent`) and the columns of its
tables. Checked in full before any work starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args, get_origin, get_type_hints

from cimdse.errors import CimdseError
from cimdse.policy import check_search_range
from cimdse.search.reward import REWARDS
from cimdse.seeds import check_seed

__all__ = [
    "DATASET_DEFAULTS",
    "DEFAULT_METHODS",
    "HISTORY_COLUMNS",
    "SEARCH_METHODS",
    "SUMMARY_COLUMNS",
    "UNIFORM_BITS",
    "PPOConfig",
    "Progress",
    "SearchConfig",
    "SearchEvent",
    "sweep_options",
]

#: uniform k/k policies every search evaluates
UNIFORM_BITS = (8, 7, 6, 5, 4, 3, 2)


@dataclass(frozen=True)
class PPOConfig:
    """The agent's and its search's settings (:mod:`cimdse.search.dyna`).

    :param learning_rate: Adam step size of the policy and value networks.
    :param episodes_per_update: surrogate episodes per PPO update (one batch).
    :param minibatches: minibatches per epoch over an update's steps.
    :param n_epochs: passes over each batch.
    :param clip_range: PPO's ratio clip.
    :param ent_coef: entropy bonus: keeps the proposals varied.
    :param vf_coef: weight of the value loss.
    :param max_grad_norm: gradient clipping.
    :param net_arch: hidden layers of the policy and of the value MLP (separate).
    :param wide_prior: initial preference for wide widths: the action logits start at
        ``wide_prior * j / (n - 1)`` for the j-th of n widths (narrowest first), so the
        first policies, evaluated before the surrogate knows anything, stay mostly near
        W8A8 and inside the bound, and each tells the surrogate about a few layers.
    :param updates_per_round: PPO updates on the surrogate between rounds of real
        evaluations.
    :param evals_per_round: real evaluations per round (0: ``budget // 40``, at least 1).
    :param initial_evals: evaluations of the untrained agent's samples before the
        surrogate is first fitted (0: ``2 x layers``, at least 8, at most a quarter of
        the budget).
    :param candidates: proposals the agent samples per round, among which the real
        evaluations are chosen.
    :param kappa: optimism of that choice: accuracy is taken as the surrogate's mean
        plus ``kappa`` times its spread.
    :param pretrained: start from the agent shipped in the package, pre-trained over the
        zoo's networks and the presets (:mod:`cimdse.search.pretrain`), instead of an
        untrained one; ``--agent-from`` takes priority over it.
    """

    learning_rate: float = 3e-3
    episodes_per_update: int = 128
    minibatches: int = 4
    n_epochs: int = 4
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    wide_prior: float = 2.0
    updates_per_round: int = 2
    evals_per_round: int = 0
    initial_evals: int = 0
    candidates: int = 256
    kappa: float = 1.0
    pretrained: bool = True

    def __post_init__(self) -> None:
        if min(self.episodes_per_update, self.minibatches, self.n_epochs, self.candidates) < 1:
            raise CimdseError("PPO: episodes_per_update, minibatches, n_epochs and candidates must be >= 1")
        if min(self.updates_per_round, self.evals_per_round, self.initial_evals) < 0:
            raise CimdseError("PPO: updates_per_round, evals_per_round and initial_evals must be >= 0")
        if not self.learning_rate > 0:
            raise CimdseError("PPO: learning_rate must be > 0")
        if not (self.wide_prior >= 0 and self.kappa >= 0 and self.ent_coef >= 0):
            raise CimdseError("PPO: wide_prior, kappa and ent_coef must be >= 0")
        if not self.net_arch or min(self.net_arch) < 1:
            raise CimdseError("PPO: net_arch needs at least one hidden layer of >= 1 unit")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d


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
    :param accuracy: ``fake-quant`` (the integer model of the fake-quantized network, which
        it equals but for float32 rounding; :mod:`cimdse.quant.exact`) or ``hardware`` (the
        arch's crossbar model), in the search and in the final fine-tune's reported accuracies
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
        check_seed(self.seed)
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


def _fits(value: Any, hint: Any) -> bool:
    """Whether a YAML value has a :class:`SearchConfig` field's type; a boolean is not a
    number (YAML's ``true`` would otherwise become 1) and a whole number is a float."""
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    if origin is not None and type(None) in get_args(hint):  # X | None
        return value is None or any(_fits(value, h) for h in get_args(hint) if h is not type(None))
    if origin is tuple:
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


def sweep_options(model: str | None, options: dict[str, Any]) -> SearchConfig:
    """The :class:`SearchConfig` of a sweep's ``search:`` section for ``model``: every
    key known and every value of its field's type (the sweep checks this before any
    point runs); a :class:`CimdseError` naming the first problem otherwise."""
    hints = get_type_hints(SearchConfig)
    known = sorted(set(hints) - {"model", "ppo"})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise CimdseError(f"search options {unknown} unknown; known: {', '.join(known)}")
    for name, value in options.items():
        if not (value is None and name in DATASET_DEFAULTS["*"]) and not _fits(value, hints[name]):  # None: default
            raise CimdseError(f"search option {name}: {value!r} is not {_type_name(hints[name])}")
    if "seed" in options:
        check_seed(options["seed"], "search option seed: ")
    opts = dict(options)
    if "methods" in opts:
        opts["methods"] = tuple(opts["methods"])
    return SearchConfig(model=model, **opts)


def _type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(map(repr, get_args(hint)))
    if get_origin(hint) is tuple:
        return "a list of names"
    words = {int: "a whole number", float: "a number", bool: "true or false", str: "text", type(None): "null"}
    return " or ".join(words.get(h, str(h)) for h in get_args(hint) or (hint,))


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
