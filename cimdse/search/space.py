"""The space of per-layer bit widths a search may choose from, with its constraints.

Every method (the PPO agent, random, greedy, uniform) goes through
:meth:`SearchSpace.project`, so a policy is legal the same way for all of them:

- bits lie in ``min_bits..max_bits`` (default 2..8, within ``cimdse.policy.check_search_range``);
- ``first_last_8bit``: the first and the last crossbar layer are fixed at 8/8 (as in
  HAQ and CIM-AQ, which keep the input and classifier layers at full precision);
- ``weight_cell_multiple``: weight bits are a multiple of the crossbar's ``cell_bits``
  (no cell is left partly used).

A value that breaks a constraint is mapped to the nearest allowed value, ties going
to the higher width (the safer one for accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimdse.errors import CimdseError
from cimdse.policy import check_search_range

__all__ = ["SearchSpace"]


@dataclass(frozen=True)
class SearchSpace:
    """Allowed (w_bits, a_bits) per layer for ``n_layers`` layers on an arch with ``cell_bits``."""

    n_layers: int
    cell_bits: int = 1
    min_bits: int = 2
    max_bits: int = 8
    first_last_8bit: bool = False
    weight_cell_multiple: bool = False

    def __post_init__(self) -> None:
        if self.n_layers < 1:
            raise CimdseError("the network has no crossbar layers to search over")
        check_search_range(self.min_bits, self.max_bits)
        if self.weight_cell_multiple and not self.weight_choices():
            raise CimdseError(
                f"no weight width in {self.min_bits}..{self.max_bits} is a multiple of cell_bits={self.cell_bits}"
            )

    @property
    def n_choices(self) -> int:
        """Actions per dimension: one per width in ``min_bits..max_bits``."""
        return self.max_bits - self.min_bits + 1

    @property
    def widths(self) -> np.ndarray:
        return np.arange(self.min_bits, self.max_bits + 1)

    def weight_choices(self) -> list[int]:
        ws = [int(b) for b in self.widths]
        return [b for b in ws if b % self.cell_bits == 0] if self.weight_cell_multiple else ws

    def fixed(self, layer: int) -> bool:
        """Whether ``layer`` is pinned at 8/8."""
        return self.first_last_8bit and layer in (0, self.n_layers - 1)

    def choices(self, layer: int) -> tuple[list[int], list[int]]:
        """Allowed weight and activation widths of ``layer``, ascending."""
        if self.fixed(layer):
            return [8], [8]
        return self.weight_choices(), [int(b) for b in self.widths]

    @staticmethod
    def _nearest(value: int, allowed: list[int]) -> int:
        return min(allowed, key=lambda b: (abs(b - value), -b))

    def project_layer(self, layer: int, w_bits: int, a_bits: int) -> tuple[int, int]:
        ws, as_ = self.choices(layer)
        return self._nearest(int(w_bits), ws), self._nearest(int(a_bits), as_)

    def project(self, policy: np.ndarray) -> np.ndarray:
        """The nearest legal policy [L, 2] to ``policy``."""
        pol = np.asarray(policy, dtype=np.int64).reshape(self.n_layers, 2)
        out = np.empty_like(pol)
        for i, (w, a) in enumerate(pol):
            out[i] = self.project_layer(i, w, a)
        return out

    def is_legal(self, policy: np.ndarray) -> bool:
        return bool(np.array_equal(self.project(policy), np.asarray(policy)))

    def action_to_bits(self, layer: int, action: np.ndarray) -> tuple[int, int]:
        """An action (index pair into ``widths``) as the legal (w_bits, a_bits) of ``layer``."""
        w = self.min_bits + int(action[0])
        a = self.min_bits + int(action[1])
        return self.project_layer(layer, w, a)

    def top(self) -> np.ndarray:
        """The widest legal policy (8/8 where allowed)."""
        return self.project(np.full((self.n_layers, 2), self.max_bits))

    def uniform(self, w_bits: int, a_bits: int) -> np.ndarray:
        """``w_bits``/``a_bits`` everywhere, projected onto the constraints."""
        return self.project(np.tile([w_bits, a_bits], (self.n_layers, 1)))

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A uniformly random legal policy."""
        out = np.empty((self.n_layers, 2), dtype=np.int64)
        for i in range(self.n_layers):
            ws, as_ = self.choices(i)
            out[i] = ws[int(rng.integers(len(ws)))], as_[int(rng.integers(len(as_)))]
        return out

    def size(self) -> int:
        """Number of distinct legal policies."""
        n = 1
        for i in range(self.n_layers):
            ws, as_ = self.choices(i)
            n *= len(ws) * len(as_)
        return n
