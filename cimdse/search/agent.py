"""The search agent: stable-baselines3's PPO (clipped policy gradient, Schulman et al.
2017) with masked actions, sb3-contrib's ``MaskablePPO``, fed by our own batched
episodes against the accuracy surrogate.

An episode walks the layers (:class:`~cimdse.search.episodes.EpisodeBatch`); at each
the policy picks (w_bits, a_bits), a ``MultiDiscrete([n, n])`` action, from the
layer's observation and the episode's *condition* (where on the front it aims, see
:mod:`cimdse.search.dyna`). Widths a layer may not take (pinned first/last layers,
weights not a multiple of the cell) are masked by sb3-contrib's masked distribution
(their logits replaced by a huge negative number), so the agent never samples them and
no probability is wasted on them (no projection after the fact).

SB3 collects experience by stepping a gym env one step for all its copies at a time;
our episodes are cheap array operations on a batch of B of them (one forward pass of
the policy per layer for all B), so the collection is ours and the learning is SB3's:
:meth:`PPOAgent.rollout` runs ``MaskablePPO.policy`` (actions, values, log-probs) layer
by layer; :meth:`PPOAgent.update` writes the batch into a ``MaskableRolloutBuffer``,
whose ``[n_steps, n_envs]`` layout is exactly ``[layers, episodes]`` (the reward at the
last layer, an episode start at the first, ``gamma = 1``, ``gae_lambda = 1``: every
step's advantage is the episode's return minus the value network's estimate), and
calls ``MaskablePPO.train()``: SB3's loss, ratio clipping, per-minibatch advantage
normalisation, minibatching, gradient clipping and Adam. Seeded: the initial weights
are drawn under ``seed``, and sampling and the minibatch order (SB3 draws them from
torch's and numpy's global generators) use the agent's own generator states, swapped
in around each use, so a seed gives the same agent and leaves the rest of the program's
random streams alone.

An agent file (``agent_<arch>.pt``, :func:`save_agent` / :func:`read_agent`) lets a
later search continue from a trained agent. It holds data only: the policy's
(``model.policy.state_dict()``) and the optimizer's tensors and a JSON text of the
settings, written by ``torch.save`` and read by ``torch.load(weights_only=True)``,
whose unpickler builds nothing but tensors and plain containers. SB3's own ``.zip``
(``model.save``) is never written or read: its loader unpickles (cloudpickle) entries
of the file, i.e. runs code from it.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.logger import Logger

from cimdse.errors import CimdseError, first_line
from cimdse.files import atomic_write
from cimdse.search.config import PPOConfig

__all__ = ["AGENT_SUFFIX", "AgentFile", "PPOAgent", "PPOConfig", "Rollout", "read_agent", "save_agent"]


@dataclass
class SearchStats:
    episodes: int = 0  # surrogate episodes trained on
    updates: int = 0
    rounds: int = 0  # rounds of real evaluations


AGENT_SUFFIX = ".pt"
_FORMAT = "cimdse-agent"
_VERSION = 3  # 1: an older stable-baselines3 PPO's tensors, 2: a hand-written PPO's; 3: MaskablePPO's policy
_MAX_AGENT_BYTES = 64 << 20  # a (64, 64) MLP agent is ~100 kB; anything far larger is not one


@dataclass(frozen=True)
class AgentFile:
    """A saved agent, as data: hyperparameters, the env's shape, the tensors.

    :param config: the hyperparameters it was trained with (a continued search keeps them)
    :param obs_dim: observation length of the env it was trained on
    :param n_choices: widths per action dimension
    :param episodes: episodes it has learned from
    :param policy: the policy's ``state_dict`` (tensors)
    :param optimizer: the optimizer's ``state_dict`` (tensors and numbers)
    """

    config: PPOConfig
    obs_dim: int
    n_choices: int
    episodes: int
    policy: dict[str, torch.Tensor]
    optimizer: dict[str, Any]

    def settings_json(self) -> str:
        doc = {"format": _FORMAT, "version": _VERSION, "ppo": self.config.as_dict(), "obs_dim": self.obs_dim,
               "n_choices": self.n_choices, "episodes": self.episodes}  # fmt: skip
        return json.dumps(doc, sort_keys=True)


def save_agent(agent: AgentFile, path: str | Path) -> Path:
    """Write ``agent`` to ``path`` atomically (tensors and a JSON text; no objects)."""
    doc = {"settings": agent.settings_json(), "policy": agent.policy, "optimizer": agent.optimizer}
    buf = io.BytesIO()  # not the temporary file: torch names the archive after it, and the bytes would vary
    torch.save(doc, buf)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buf.getvalue()))


def _refuse(path: Path, why: str) -> CimdseError:
    return CimdseError(f"{path}: {why}; not loaded (give an agent_<arch>{AGENT_SUFFIX} written by `cimdse search`)")


def read_agent(path: str | Path) -> AgentFile:
    """The agent saved at ``path``, read as data only; anything else is refused with a
    :class:`CimdseError` before any of it is used (an old stable-baselines3 ``.zip``,
    a file with pickled objects, a foreign or truncated file)."""
    path = Path(path)
    if not path.exists():
        raise CimdseError(f"{path}: no such agent file")
    if not path.is_file():
        raise _refuse(path, "not a regular file")
    if path.stat().st_size > _MAX_AGENT_BYTES:
        raise _refuse(path, f"larger than {_MAX_AGENT_BYTES >> 20} MiB, not an agent")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip; anything else is not an agent
        raise _refuse(path, "not a cimdse agent file")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        names = set()
    if {"data", "policy.pth"} <= names:
        raise _refuse(path, "a stable-baselines3 agent (.zip, older cimdse), whose loader runs code from the file")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise _refuse(path, "holds pickled objects other than tensors (loading them could run code)") from None
    except Exception as err:  # not a torch file, truncated
        raise _refuse(path, f"not a cimdse agent file ({type(err).__name__})") from None
    try:
        settings = json.loads(doc["settings"])
        if settings.get("format") != _FORMAT:
            raise ValueError("format")
        if settings.get("version") != _VERSION:
            raise CimdseError(f"{path}: agent file version {settings.get('version')}, this cimdse reads {_VERSION}")
        known = {f.name for f in fields(PPOConfig)}
        ppo = {k: v for k, v in settings["ppo"].items() if k in known}
        ppo["net_arch"] = tuple(int(v) for v in ppo.get("net_arch", ()))
        agent = AgentFile(
            PPOConfig(**ppo), int(settings["obs_dim"]), int(settings["n_choices"]), int(settings["episodes"]),
            dict(doc["policy"]), dict(doc["optimizer"]),
        )  # fmt: skip
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in agent.policy.items()):
            raise ValueError("policy")
    except CimdseError:
        raise
    except Exception as err:  # a torch file, but not an agent
        raise _refuse(path, f"not a cimdse agent file ({type(err).__name__}: {first_line(err)})") from None
    return agent


@dataclass
class Rollout:
    """A batch of B episodes over L layers: what PPO needs to learn from them."""

    obs: torch.Tensor  # [L, B, D]
    actions: torch.Tensor  # [L, B, 2] indices into the widths
    values: torch.Tensor  # [L, B] the value network's estimate at each step
    logp: torch.Tensor  # [L, B] log-probability of each step's action
    masks: np.ndarray  # [L, B, 2n] legal widths per step (both dimensions side by side)
    policies: np.ndarray  # [B, L, 2] bits


class PPOAgent:
    """sb3-contrib's ``MaskablePPO`` over per-layer width choices, on batched episodes
    (see the module doc).

    :param obs_dim: observation length (:data:`cimdse.search.episodes.AGENT_OBS_DIM`)
    :param n_choices: widths per action dimension
    :param config: settings (ignored when ``saved`` is given: a continued agent keeps its own)
    :param seed: its initial weights, its sampling and its minibatch order
    :param saved: an agent from :func:`read_agent` to continue from
    """

    def __init__(
        self,
        obs_dim: int,
        n_choices: int,
        config: PPOConfig | None = None,
        seed: int = 0,
        saved: AgentFile | None = None,
    ) -> None:
        self.config = cfg = saved.config if saved is not None else (config or PPOConfig())
        self.obs_dim, self.n = obs_dim, n_choices
        self.episodes = 0
        self._buffers: dict[tuple[int, int], MaskableRolloutBuffer] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            # no env: the episodes are ours (see the module doc); the spaces are what SB3 needs of one
            self.model = MaskablePPO(
                MaskableActorCriticPolicy, None, learning_rate=cfg.learning_rate, n_steps=1, batch_size=None,
                n_epochs=cfg.n_epochs, gamma=1.0, gae_lambda=1.0, clip_range=cfg.clip_range, ent_coef=cfg.ent_coef,
                vf_coef=cfg.vf_coef, max_grad_norm=cfg.max_grad_norm, device="cpu", _init_setup_model=False,
                policy_kwargs={"net_arch": {"pi": list(cfg.net_arch), "vf": list(cfg.net_arch)}},
            )  # fmt: skip
            self.model.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
            self.model.action_space = spaces.MultiDiscrete([n_choices, n_choices])
            self.model.n_envs = 1
            self.model._setup_model()
            self._torch_rng = torch.get_rng_state()
        self._numpy_rng = np.random.RandomState(seed).get_state()
        self.model.set_logger(Logger(None, []))  # SB3's training statistics: recorded, written nowhere
        self.policy = self.model.policy
        self.policy.set_training_mode(False)
        if saved is not None:
            self._restore(saved)
        elif cfg.wide_prior:
            ramp = torch.linspace(0.0, cfg.wide_prior, n_choices) if n_choices > 1 else torch.zeros(1)
            with torch.no_grad():
                self.policy.action_net.bias.copy_(ramp.repeat(2))

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        return self.policy.optimizer

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run SB3 (which samples from torch's and numpy's global generators) on the
        agent's own generator states, leaving the global ones as they were."""
        outer = np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._torch_rng)
            np.random.set_state(self._numpy_rng)
            try:
                yield
            finally:
                self._torch_rng = torch.get_rng_state()
                self._numpy_rng = np.random.get_state()
                np.random.set_state(outer)

    def _restore(self, saved: AgentFile) -> None:
        if (saved.obs_dim, saved.n_choices) != (self.obs_dim, self.n):
            raise CimdseError(
                f"the agent does not fit this search: it was trained on {saved.obs_dim} features and "
                f"{saved.n_choices} widths per choice, this search has {self.obs_dim} and {self.n}"
            )
        try:
            self.policy.load_state_dict(saved.policy)
            self.optimizer.load_state_dict(saved.optimizer)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CimdseError(f"the agent's tensors do not fit its settings ({first_line(err)})") from None
        self.episodes = saved.episodes

    @torch.no_grad()
    def rollout(self, episodes: Any, cond: np.ndarray, greedy: bool = False) -> Rollout:
        """Run ``len(cond)`` episodes (an :class:`~cimdse.search.episodes.EpisodeBatch`),
        sampling each step's widths (or taking the likeliest with ``greedy``)."""
        b, n_layers = len(cond), episodes.n_layers
        obs_all = torch.empty(n_layers, b, self.obs_dim)
        acts = torch.empty(n_layers, b, 2, dtype=torch.long)
        values, logp = torch.empty(n_layers, b), torch.empty(n_layers, b)
        masks = np.repeat(episodes.masks.reshape(n_layers, 1, 2 * self.n), b, axis=1)
        policies = np.empty((b, n_layers, 2), dtype=np.int64)
        prev, used = None, np.zeros(b)
        with self._own_rng():
            for layer in range(n_layers):
                obs = torch.as_tensor(episodes.obs(layer, prev, cond, used))
                a, v, lp = self.policy(obs, deterministic=greedy, action_masks=masks[layer])
                obs_all[layer], acts[layer], values[layer], logp[layer] = obs, a, v.view(-1), lp
                prev = policies[:, layer] = episodes.bits(a.numpy())
                used = used + episodes.used(layer, prev)
        return Rollout(obs_all, acts, values, logp, masks, policies)

    def _buffer(self, n_layers: int, b: int) -> MaskableRolloutBuffer:
        """SB3's buffer for B episodes of L layers: ``n_steps = L``, ``n_envs = B``."""
        key = (n_layers, b)
        if key not in self._buffers:
            m = self.model
            self._buffers[key] = MaskableRolloutBuffer(
                n_layers, m.observation_space, m.action_space, m.device, gamma=1.0, gae_lambda=1.0, n_envs=b
            )
        return self._buffers[key]

    def update(self, ro: Rollout, returns: np.ndarray) -> None:
        """One PPO update (SB3's ``train()``) on a rollout whose episodes returned ``returns`` [B]."""
        n_layers, b = ro.logp.shape
        buf = self._buffer(n_layers, b)
        buf.reset()
        starts, reward = np.zeros(b, dtype=np.float32), np.zeros(b, dtype=np.float32)
        for layer in range(n_layers):
            last = layer == n_layers - 1
            buf.add(
                ro.obs[layer].numpy(), ro.actions[layer].numpy(),
                np.asarray(returns, dtype=np.float32) if last else reward, starts + (layer == 0),
                ro.values[layer], ro.logp[layer], action_masks=ro.masks[layer],
            )  # fmt: skip
        buf.compute_returns_and_advantage(last_values=torch.zeros(b), dones=np.ones(b, dtype=np.float32))
        self.model.rollout_buffer = buf
        self.model.batch_size = max(1, n_layers * b // self.config.minibatches)
        with self._own_rng():
            self.model.train()
        self.policy.set_training_mode(False)
        self.episodes += b

    def state(self) -> AgentFile:
        """The agent as data (see :class:`AgentFile`)."""
        weights = {k: v.detach().clone() for k, v in self.policy.state_dict().items()}
        return AgentFile(self.config, self.obs_dim, self.n, self.episodes, weights, self.optimizer.state_dict())

    def save(self, path: str | Path) -> Path:
        """Write the agent (weights, optimizer state, settings as JSON) to ``path``, atomically."""
        return save_agent(self.state(), path)
