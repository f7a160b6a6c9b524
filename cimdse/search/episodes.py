"""Episodes in a batch: the agent's view of one network on one arch.

The same observation as :class:`~cimdse.search.env.BitWidthEnv` (the layer's
features, the previous layer's widths, the arch's features; see
:data:`~cimdse.search.env.LAYER_FEATURES`), plus two features of the chip's budget,
the crossbars the layers chosen so far take and those the remaining layers need at
their narrowest weights (each as a share of the chip's crossbars, capped at 2): whether
the network will be resident, and how many spare crossbars can hold copies, is a
property of the whole policy that one layer's features cannot show; and the episode's
*condition* in [0, 1] (where on the front it aims: 0 at the accuracy bound, 1 at
W8A8's accuracy). For B episodes at once; and per layer the mask of the widths it may take
(:meth:`SearchSpace.choices`: pinned layers and cell multiples), so actions need no
projection.
"""

from __future__ import annotations

import numpy as np

from cimdse.compiler import CompiledNetwork
from cimdse.search.env import OBS_DIM, arch_features, layer_features
from cimdse.search.space import SearchSpace

__all__ = ["AGENT_OBS_DIM", "EpisodeBatch"]

AGENT_OBS_DIM = OBS_DIM + 3  # the env's observation, the crossbar budget (2), the condition


class EpisodeBatch:
    """Observations, masks and widths of batched episodes on ``compiled`` within ``space``."""

    def __init__(self, compiled: CompiledNetwork, space: SearchSpace) -> None:
        if space.n_layers != compiled.n_layers:
            raise ValueError(f"space has {space.n_layers} layers, the network {compiled.n_layers}")
        self.space = space
        self.n_layers = space.n_layers
        self.static = layer_features(compiled)
        self.arch = arch_features(compiled)
        self.xbars = np.asarray(compiled.tables.crossbars, dtype=float)  # [L, 8]: per weight width
        self.chip = float(compiled.arch.chip.crossbars)
        narrowest = [self.xbars[i, min(space.choices(i)[0]) - 1] for i in range(self.n_layers)]
        self.rest = np.cumsum(narrowest[::-1])[::-1]  # [L]: layers i.. at their narrowest
        n = space.n_choices
        self.masks = np.zeros((self.n_layers, 2, n), dtype=bool)
        for i in range(self.n_layers):
            for d, allowed in enumerate(space.choices(i)):
                self.masks[i, d, np.asarray(allowed) - space.min_bits] = True

    def used(self, layer: int, bits: np.ndarray) -> np.ndarray:
        """Crossbars [B] that ``layer`` takes at ``bits`` [B, 2]."""
        return self.xbars[layer, np.asarray(bits)[:, 0] - 1]

    def obs(self, layer: int, prev: np.ndarray | None, cond: np.ndarray, used: np.ndarray | None = None) -> np.ndarray:
        """[B, AGENT_OBS_DIM] at ``layer``; ``prev``: the previous layer's bits [B, 2] (None at
        the first); ``used``: crossbars [B] the layers before take (None: 0)."""
        b = len(cond)
        span = max(self.space.max_bits - self.space.min_bits, 1)
        prev_f = np.ones((b, 2)) if prev is None else np.clip((prev - self.space.min_bits) / span, 0.0, 1.0)
        out = np.empty((b, AGENT_OBS_DIM), dtype=np.float32)
        k = self.static.shape[1]
        out[:, :k] = self.static[layer]
        out[:, k : k + 2] = prev_f
        out[:, k + 2 : -3] = self.arch
        out[:, -3] = np.minimum((0.0 if used is None else used) / self.chip, 2.0) / 2
        out[:, -2] = min(self.rest[layer] / self.chip, 2.0) / 2
        out[:, -1] = cond
        return out

    def bits(self, actions: np.ndarray) -> np.ndarray:
        """Action indices [B, 2] as bits."""
        return np.asarray(actions, dtype=np.int64) + self.space.min_bits
