"""A gymnasium environment: one episode quantizes the network, one step one layer.

Observation (``Box(0, 1, float32)``), for the layer about to be quantized, then for
the architecture; sizes are log-scaled against fixed caps so the same features mean
the same thing on every network and arch (see :data:`LAYER_FEATURES`,
:data:`ARCH_FEATURES`)::

    layer: index, is_conv, is_linear, is_grouped, K, N, V, kernel, stride, params,
           crossbars per copy (8-bit weights), share of the W8A8 latency,
           previous layer's w_bits and a_bits
    arch:  rows, cols, cell_bits, dac_bits, adc_bits (0 = ideal), crossbar count

Action: ``MultiDiscrete([n, n])``, indices into ``min_bits..max_bits`` for
(w_bits, a_bits). The env maps an action that breaks a constraint to the nearest
allowed width (:meth:`SearchSpace.project_layer`), so every episode yields a legal
policy and the agent learns that the pinned choices make no difference.

Reward: 0 on every step but the last; at the last, the policy is scored (cost model
latency, cached accuracy, :mod:`cimdse.search.reward`) and ``info`` carries the
:class:`Outcome`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from cimdse.compiler import CompiledNetwork
from cimdse.policy import uniform_policy
from cimdse.search.evaluator import Outcome
from cimdse.search.space import SearchSpace

__all__ = ["ARCH_FEATURES", "LAYER_FEATURES", "OBS_DIM", "BitWidthEnv", "arch_features", "layer_features"]

LAYER_FEATURES = (
    "index",
    "is_conv",
    "is_linear",
    "is_grouped",
    "K",
    "N",
    "V",
    "kernel",
    "stride",
    "params",
    "crossbars_per_copy",
    "w8a8_latency_share",
    "prev_w_bits",
    "prev_a_bits",
)
ARCH_FEATURES = ("rows", "cols", "cell_bits", "dac_bits", "adc_bits", "crossbars")
OBS_DIM = len(LAYER_FEATURES) + len(ARCH_FEATURES)  # the observation's length, on every network and arch


def _log(x: float, cap: float) -> float:
    """log2(1 + x) / log2(1 + cap), clipped to [0, 1]."""
    return min(1.0, math.log2(1.0 + max(0.0, float(x))) / math.log2(1.0 + cap))


def layer_features(compiled: CompiledNetwork) -> np.ndarray:
    """Static features [L, len(LAYER_FEATURES) - 2] (the previous action is added per step)."""
    layers = compiled.network.layers
    n = len(layers)
    share = compiled.evaluate(uniform_policy(8, 8, n)).layer_latency_s[0]
    share = share / max(share.sum(), 1e-30)
    xbars = compiled.tables.crossbars[:, 7]
    rows = []
    for i, layer in enumerate(layers):
        kernel = float(np.prod(layer.kernel)) if layer.kernel else 1.0
        stride = float(max(layer.stride)) if layer.stride else 1.0
        rows.append(
            [
                i / max(n - 1, 1),
                float(layer.kind.startswith("conv")),
                float(layer.kind == "linear"),
                float(layer.groups > 1),
                _log(layer.K, 2**16),
                _log(layer.N, 2**16),
                _log(layer.V, 2**20),
                _log(kernel, 121),
                min(1.0, (stride - 1) / 3),
                _log(layer.params, 2**27),
                _log(xbars[i], 2**16),
                float(share[i]),
            ]
        )
    return np.asarray(rows, dtype=np.float32)


def arch_features(compiled: CompiledNetwork) -> np.ndarray:
    spec, chip = compiled.arch.crossbar, compiled.arch.chip
    return np.asarray(
        [
            _log(spec.rows, 4096),
            _log(spec.cols, 4096),
            spec.cell_bits / 8,
            spec.dac_bits / 8,
            0.0 if spec.adc_bits is None else spec.adc_bits / 16,
            _log(chip.crossbars, 2**20),
        ],
        dtype=np.float32,
    )


class BitWidthEnv(gym.Env[np.ndarray, np.ndarray]):
    """Per-layer (w_bits, a_bits) choice on one compiled network and arch.

    :param compiled: the network compiled on the arch (features and latency)
    :param space: allowed widths and constraints
    :param score: scores a finished policy [L, 2]; typically a
        :class:`~cimdse.search.evaluator.MethodRecorder` (budget, cache, history)
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        compiled: CompiledNetwork,
        space: SearchSpace,
        score: Callable[[np.ndarray, int], Outcome],
    ) -> None:
        super().__init__()
        if space.n_layers != compiled.n_layers:
            raise ValueError(f"space has {space.n_layers} layers, the network {compiled.n_layers}")
        self.compiled = compiled
        self.space = space
        self.score = score
        self._static = layer_features(compiled)
        self._arch = arch_features(compiled)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(OBS_DIM,), dtype=np.float32)
        self.action_space = spaces.MultiDiscrete([space.n_choices, space.n_choices])
        self.episode = -1
        self.last_outcome: Outcome | None = None
        self._layer = 0
        self._policy = np.zeros((space.n_layers, 2), dtype=np.int64)

    def _obs(self) -> np.ndarray:
        i = self._layer
        span = max(self.space.max_bits - self.space.min_bits, 1)
        if i == 0:
            prev = np.ones(2, dtype=np.float32)
        else:
            prev = ((self._policy[i - 1] - self.space.min_bits) / span).astype(np.float32)
        prev = np.clip(prev, 0.0, 1.0)
        return np.concatenate([self._static[i], prev, self._arch]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode += 1
        self._layer = 0
        self._policy[:] = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._layer >= self.space.n_layers:
            raise RuntimeError("step() after the episode ended; call reset()")
        self._policy[self._layer] = self.space.action_to_bits(self._layer, np.asarray(action))
        self._layer += 1
        if self._layer < self.space.n_layers:
            return self._obs(), 0.0, False, False, {}
        out = self.score(self._policy.copy(), self.episode)
        self.last_outcome = out
        self._layer = self.space.n_layers - 1  # the terminal observation repeats the last layer
        obs = self._obs()
        self._layer = self.space.n_layers
        return obs, float(out.reward), True, False, {"outcome": out, "policy": self._policy.copy()}
