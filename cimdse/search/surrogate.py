"""A learned accuracy surrogate: what the agent trains against between real evaluations.

The model is HAWQ's, learned instead of probed: quantizing a layer's weights or
activations to ``b`` bits adds noise whose power grows by a factor ``g`` per bit
removed (``g = 4`` for uniform quantization), and the loss grows with the summed
noise, each (layer, dim) weighted by its own sensitivity ``alpha >= 0``::

    z(policy) = sum_{l, d} alpha[l, d] * (g_d ** (top - b[l, d]) - 1) / (g_d ** (top - min_bits) - 1)
    acc(policy) = ref * exp(-z)

``ref`` is the W8A8 accuracy, ``top`` the widest width. Fitted by non-negative least
squares on ``z = log(ref / acc)`` of the evaluated policies (accuracies below half of
``ref`` count as half: a collapsed network says "too far", not how far), with a small
ridge; the growths ``g_d`` (one for weights, one for activations) are chosen among
:data:`GROWTHS` by k-fold error. Uncertainty: the spread of ``n_boot`` bootstrap
refits and the fit's residual (an evaluation's own noise: a validation split of a few
hundred samples moves in steps of a few tenths of a pp), so the search can send real
evaluations where the outcome is unsure. With 2 parameters per layer it is identified after a few dozen
evaluations of mixed policies, where a per-(layer, width) table would need hundreds.

:func:`accuracy_step` tells how coarse the measured accuracies are (one validation
sample's share): where a step is a large part of the bound, the fit cannot resolve the
front, and the search (:mod:`cimdse.search.dyna`) exploits the front's neighbours too.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls

__all__ = ["GROWTHS", "AccuracySurrogate", "accuracy_step"]

GROWTHS = (2.0, 3.0, 4.0)  # noise-power growth per bit removed
_FLOOR = 0.5  # accuracies below FLOOR * ref are censored there
_RIDGE = 1e-3
_MAX_SPLIT = 20_000  # accuracy_step looks for validation splits up to this size


def accuracy_step(accs: np.ndarray) -> float:
    """One validation sample's share of the accuracy, ``1 / n`` for the smallest split
    size ``n`` that makes every accuracy in ``accs`` a whole count (within float32's
    rounding); 0.0 when none up to 20,000 does (the accuracies are not counts)."""
    a = np.unique(np.asarray(accs, dtype=float))
    if a.size < 2:
        return 0.0
    for n in range(1, _MAX_SPLIT + 1):
        k = a * n
        if np.all(np.abs(k - np.round(k)) < 1e-6 * n):  # float32's rounding of a count out of n
            return 1.0 / n
    return 0.0


class AccuracySurrogate:
    """Predicted accuracy (mean, spread) of policies [P, L, 2] on one network.

    :param ref_acc: the W8A8 (widest policy's) validation accuracy, a fraction
    :param top: the widest width (8); ``min_bits``: the narrowest searched
    :param n_boot: bootstrap refits for the spread
    :param seed: seeds the bootstrap
    """

    def __init__(
        self, n_layers: int, ref_acc: float, top: int = 8, min_bits: int = 2, n_boot: int = 8, seed: int = 0
    ) -> None:
        self.n_layers, self.ref, self.top, self.min_bits = n_layers, max(float(ref_acc), 1e-6), top, min_bits
        self.n_boot = n_boot
        self.rng = np.random.default_rng(seed)
        self.growth = (4.0, 4.0)
        self.noise = 0.0  # residual spread of the fit, in accuracy
        self.alpha = np.zeros(2 * n_layers)
        self.boot = np.zeros((0, 2 * n_layers))

    def features(self, policies: np.ndarray, growth: tuple[float, float] | None = None) -> np.ndarray:
        """[P, 2L]: each (layer, dim)'s normalized noise term (layer-major, weights then activations)."""
        g = np.array(self.growth if growth is None else growth)
        b = np.asarray(policies, dtype=float).reshape(-1, self.n_layers, 2)
        return ((g ** (self.top - b) - 1.0) / (g ** (self.top - self.min_bits) - 1.0)).reshape(len(b), -1)

    def _target(self, accs: np.ndarray) -> np.ndarray:
        return np.log(self.ref / np.clip(np.asarray(accs, float), _FLOOR * self.ref, None)).clip(0.0, None)

    @staticmethod
    def _solve(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        k = x.shape[1]
        a = np.vstack([x, np.sqrt(_RIDGE) * np.eye(k)])
        return nnls(a, np.concatenate([z, np.zeros(k)]), maxiter=50 * k)[0]

    def fit(self, policies: np.ndarray, accs: np.ndarray) -> AccuracySurrogate:
        """Refit on every evaluated policy [N, L, 2] and its accuracy [N]."""
        policies = np.asarray(policies).reshape(-1, self.n_layers, 2)
        z = self._target(accs)
        n = len(z)
        if n == 0:
            return self
        if n >= 6:  # the growth with the least k-fold error
            folds = np.arange(n) % min(5, n)
            errors = []
            grid = [(gw, ga) for gw in GROWTHS for ga in GROWTHS]
            for g in grid:
                x = self.features(policies, g)
                err = 0.0
                for f in np.unique(folds):
                    tr, te = folds != f, folds == f
                    err += float(np.sum((x[te] @ self._solve(x[tr], z[tr]) - z[te]) ** 2))
                errors.append(err)
            self.growth = grid[int(np.argmin(errors))]
        x = self.features(policies)
        self.alpha = self._solve(x, z)
        fitted = self.ref * np.exp(-(x @ self.alpha))
        seen = np.asarray(accs, float)
        ok = seen > _FLOOR * self.ref  # the censored ones say nothing about the noise
        self.noise = float(np.sqrt(np.mean((fitted[ok] - seen[ok]) ** 2))) if ok.sum() > 2 * self.n_layers else 0.0
        boots = []
        for _ in range(self.n_boot):
            idx = self.rng.integers(0, n, n)
            boots.append(self._solve(x[idx], z[idx]))
        self.boot = np.array(boots)
        return self

    def predict(self, policies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Accuracy mean and spread [P] (fractions) of policies [P, L, 2]: the spread
        of the bootstrap fits and the noise of an evaluation, combined."""
        x = self.features(policies)
        mean = self.ref * np.exp(-(x @ self.alpha))
        model = (self.ref * np.exp(-(x @ self.boot.T))).std(axis=1) if len(self.boot) > 1 else np.zeros_like(mean)
        return mean, np.sqrt(model**2 + self.noise**2)
