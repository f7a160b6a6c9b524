"""Optuna's TPE sampler over the same per-layer choices: the black-box optimizer a
user would reach for first.

Tree-structured Parzen estimator (Bergstra et al. 2011; Optuna's ``TPESampler``,
Akiba et al. 2019): after ``n_startup_trials`` random trials it splits the trials
into the best ``gamma`` fraction and the rest by objective, fits a Parzen density to
each per parameter, and proposes the candidate that maximizes ``l(x) / g(x)``. The
parameters are each layer's allowed weight and activation widths (categorical, as
the :class:`SearchSpace` allows them, so every trial is a legal policy); the
objective is the policy's reward. A proposal already evaluated is answered from the
recorder (no budget spent) and told to the study all the same, so the sampler
learns from it; the run stops when the budget of distinct policies is spent, or
after ``max_trials_factor x budget`` trials.
"""

from __future__ import annotations

import numpy as np

from cimdse.search.evaluator import MethodRecorder
from cimdse.search.space import SearchSpace

__all__ = ["tpe_search"]


def tpe_search(
    recorder: MethodRecorder,
    space: SearchSpace,
    seed: int = 0,
    *,
    n_startup_trials: int = 10,
    max_trials_factor: int = 3,
) -> int:
    """Spend ``recorder``'s budget on TPE proposals; returns the number of trials."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials, multivariate=True)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        budget = min(recorder.budget, space.size())
        trials = 0
        while recorder.count < budget and trials < max_trials_factor * recorder.budget:
            trial = study.ask()
            policy = np.empty((space.n_layers, 2), dtype=np.int64)
            for i in range(space.n_layers):
                ws, as_ = space.choices(i)
                policy[i, 0] = trial.suggest_categorical(f"w{i}", ws)
                policy[i, 1] = trial.suggest_categorical(f"a{i}", as_)
            study.tell(trial, recorder(policy).reward)
            trials += 1
    finally:
        optuna.logging.set_verbosity(verbosity)
    return trials
