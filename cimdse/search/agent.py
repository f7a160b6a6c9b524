"""The search agent: PPO (clipped policy gradient, Schulman et al. 2017) with masked
actions, written for this search rather than taken from stable-baselines3.

An episode walks the layers (:class:`~cimdse.search.episodes.EpisodeBatch`); at each
the policy network picks (w_bits, a_bits) from the layer's observation and the
episode's *condition* (where on the front it aims, see :mod:`cimdse.search.dyna`).
Widths a layer may not take (pinned first/last layers, weights not a multiple of the
cell) are masked: their logits are set to -inf, so the agent never samples them and
no probability is wasted on them (no projection after the fact). The reward comes at
the end (``gamma = 1``), so every step's advantage is the episode's return minus the
value network's estimate at that step. Episodes run as a batch (one forward pass per
layer for all of them), which makes the thousands of episodes the agent trains on
against the surrogate cheap. Seeded: its own torch generator for sampling and its
initial weights drawn under ``seed``, so a seed gives the same agent.

An agent file (``agent_<arch>.pt``, :func:`save_agent` / :func:`read_agent`) lets a
later search continue from a trained agent. It holds data only: the networks' and the
optimizer's tensors and a JSON text of the settings, written by ``torch.save`` and
read by ``torch.load(weights_only=True)``, whose unpickler builds nothing but tensors
and plain containers. An older cimdse's stable-baselines3 ``.zip`` is never read: its
loader unpickles (cloudpickle) entries of the file, i.e. runs code from it.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
_VERSION = 2  # 1: the stable-baselines3 agent's tensors
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


def _mlp(n_in: int, hidden: tuple[int, ...], n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), nn.Tanh()]
        n_in = h
    return nn.Sequential(*layers, nn.Linear(n_in, n_out))


@dataclass
class Rollout:
    """A batch of B episodes over L layers: what PPO needs to learn from them."""

    obs: torch.Tensor  # [L, B, D]
    actions: torch.Tensor  # [L, B, 2] indices into the widths
    logp: torch.Tensor  # [L, B] log-probability of each step's action
    masks: torch.Tensor  # [L, 2, n] legal widths per layer
    policies: np.ndarray  # [B, L, 2] bits


class PPOAgent:
    """Masked PPO over per-layer width choices (see the module doc).

    :param obs_dim: observation length (:data:`cimdse.search.episodes.AGENT_OBS_DIM`)
    :param n_choices: widths per action dimension
    :param config: settings (ignored when ``saved`` is given: a continued agent keeps its own)
    :param seed: its initial weights and its sampling
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
        self.config = saved.config if saved is not None else (config or PPOConfig())
        self.obs_dim, self.n = obs_dim, n_choices
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.pi = _mlp(obs_dim, self.config.net_arch, 2 * n_choices)
            self.vf = _mlp(obs_dim, self.config.net_arch, 1)
        self.gen = torch.Generator().manual_seed(seed)
        self.optimizer = torch.optim.Adam([*self.pi.parameters(), *self.vf.parameters()], lr=self.config.learning_rate)
        self.episodes = 0
        if saved is not None:
            self._restore(saved)
        elif self.config.wide_prior:
            ramp = torch.linspace(0.0, self.config.wide_prior, n_choices) if n_choices > 1 else torch.zeros(1)
            with torch.no_grad():
                self.pi[-1].bias.copy_(ramp.repeat(2))

    def _restore(self, saved: AgentFile) -> None:
        if (saved.obs_dim, saved.n_choices) != (self.obs_dim, self.n):
            raise CimdseError(
                f"the agent does not fit this search: it was trained on {saved.obs_dim} features and "
                f"{saved.n_choices} widths per choice, this search has {self.obs_dim} and {self.n}"
            )
        try:
            self.pi.load_state_dict({k[3:]: v for k, v in saved.policy.items() if k.startswith("pi.")})
            self.vf.load_state_dict({k[3:]: v for k, v in saved.policy.items() if k.startswith("vf.")})
            self.optimizer.load_state_dict(saved.optimizer)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CimdseError(f"the agent's tensors do not fit its settings ({first_line(err)})") from None
        self.episodes = saved.episodes

    def _logits(self, obs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked logits [N, 2, n]; ``mask`` [N, 2, n] or [2, n]."""
        logits = self.pi(obs).view(-1, 2, self.n)
        return logits.masked_fill(~mask, -1e9)

    @torch.no_grad()
    def rollout(self, episodes: Any, cond: np.ndarray, greedy: bool = False) -> Rollout:
        """Run ``len(cond)`` episodes (an :class:`~cimdse.search.episodes.EpisodeBatch`),
        sampling each step's widths (or taking the likeliest with ``greedy``)."""
        b, n_layers = len(cond), episodes.n_layers
        obs_all = torch.empty(n_layers, b, self.obs_dim)
        acts = torch.empty(n_layers, b, 2, dtype=torch.long)
        logp = torch.empty(n_layers, b)
        masks = torch.as_tensor(episodes.masks)
        policies = np.empty((b, n_layers, 2), dtype=np.int64)
        prev, used = None, np.zeros(b)
        for layer in range(n_layers):
            obs = torch.as_tensor(episodes.obs(layer, prev, cond, used))
            logits = self._logits(obs, masks[layer])
            lp = torch.log_softmax(logits, dim=-1)
            if greedy:
                a = lp.argmax(dim=-1)
            else:
                a = torch.multinomial(lp.exp().view(-1, self.n), 1, generator=self.gen).view(b, 2)
            obs_all[layer], acts[layer] = obs, a
            logp[layer] = lp.gather(-1, a.unsqueeze(-1)).squeeze(-1).sum(-1)
            prev = policies[:, layer] = episodes.bits(a.numpy())
            used = used + episodes.used(layer, prev)
        return Rollout(obs_all, acts, logp, masks, policies)

    def update(self, ro: Rollout, returns: np.ndarray) -> None:
        """One PPO update on a rollout whose episodes returned ``returns`` [B]."""
        cfg = self.config
        n_layers, b = ro.logp.shape
        obs = ro.obs.reshape(n_layers * b, -1)
        acts = ro.actions.reshape(n_layers * b, 2)
        old = ro.logp.reshape(-1)
        masks = ro.masks.unsqueeze(1).expand(n_layers, b, 2, self.n).reshape(n_layers * b, 2, self.n)
        ret = torch.as_tensor(np.asarray(returns, dtype=np.float32)).repeat(n_layers)
        with torch.no_grad():
            adv = ret - self.vf(obs).squeeze(-1)
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        size = max(1, len(old) // cfg.minibatches)
        for _ in range(cfg.n_epochs):
            order = torch.randperm(len(old), generator=self.gen)
            for start in range(0, len(old), size):
                idx = order[start : start + size]
                lp = torch.log_softmax(self._logits(obs[idx], masks[idx]), dim=-1)
                new = lp.gather(-1, acts[idx].unsqueeze(-1)).squeeze(-1).sum(-1)
                ratio = torch.exp(new - old[idx])
                clipped = torch.clamp(ratio, 1 - cfg.clip_range, 1 + cfg.clip_range)
                pg = -torch.min(ratio * adv[idx], clipped * adv[idx]).mean()
                entropy = -(lp.exp() * lp).sum(dim=(-1, -2)).mean()
                vloss = ((self.vf(obs[idx]).squeeze(-1) - ret[idx]) ** 2).mean()
                loss = pg - cfg.ent_coef * entropy + cfg.vf_coef * vloss
                self.optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_([*self.pi.parameters(), *self.vf.parameters()], cfg.max_grad_norm)
                self.optimizer.step()
        self.episodes += b

    def state(self) -> AgentFile:
        """The agent as data (see :class:`AgentFile`)."""
        weights = {f"pi.{k}": v.detach().clone() for k, v in self.pi.state_dict().items()}
        weights.update({f"vf.{k}": v.detach().clone() for k, v in self.vf.state_dict().items()})
        return AgentFile(self.config, self.obs_dim, self.n, self.episodes, weights, self.optimizer.state_dict())

    def save(self, path: str | Path) -> Path:
        """Write the agent (weights, optimizer state, settings as JSON) to ``path``, atomically."""
        return save_agent(self.state(), path)
