"""The search agent: stable-baselines3 PPO on :class:`~cimdse.search.env.BitWidthEnv`.

PPO (clipped policy gradient, Schulman et al. 2017) replaces HAQ/CIM-AQ's DDPG: the
action space is discrete (bit widths), episodes are short (one step per layer) and
the reward comes only at the end, which suits an on-policy method with
``gamma = 1``. The agent runs until its method has evaluated ``budget`` distinct
policies; episodes that repeat a policy are answered from the cache, cost no
evaluation and still train the agent (capped at ``max_episodes_factor * budget``
episodes once the policy has converged).

An agent file (``agent_<arch>.pt``, :func:`save_agent` / :func:`read_agent`) lets a
later search continue from a trained agent. It holds data only: the policy's and the
optimizer's tensors and a JSON text of the settings, written by ``torch.save`` and
read by ``torch.load(weights_only=True)``, whose unpickler builds nothing but tensors
and plain containers. stable-baselines3's own ``.zip`` is never read: its loader
unpickles (cloudpickle) entries of the file, i.e. runs code from it.
"""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from cimdse.errors import CimdseError, first_line
from cimdse.files import atomic_write
from cimdse.search.env import BitWidthEnv
from cimdse.search.evaluator import MethodRecorder

__all__ = ["AGENT_SUFFIX", "AgentFile", "PPOAgent", "PPOConfig", "read_agent", "save_agent"]


@dataclass(frozen=True)
class PPOConfig:
    """PPO hyperparameters (stable-baselines3 names where they exist).

    :param learning_rate: Adam step size of the policy and value networks.
    :param episodes_per_update: episodes collected per PPO update
        (``n_steps = episodes_per_update * layers``); few, as evaluations are dear.
    :param minibatches: minibatches per epoch over a rollout (``batch_size = n_steps // minibatches``).
    :param n_epochs: passes over each rollout.
    :param gamma: discount; 1: the only reward is the episode's last.
    :param gae_lambda: GAE trade-off between bias and variance of the advantage.
    :param clip_range: PPO's ratio clip.
    :param ent_coef: entropy bonus: keeps exploring, so the budget buys new policies.
    :param vf_coef: weight of the value loss.
    :param max_grad_norm: gradient clipping.
    :param net_arch: hidden layers of the policy and of the value MLP (separate).
    :param reward_scale: rewards are multiplied by this for learning (CIM-AQ's reward
        reaches the hundreds; a value target near 1 trains better).
    :param max_episodes_factor: stop after ``factor * budget`` episodes even if the
        budget of distinct policies is not spent (a converged agent repeats itself).
    :param wide_prior: initial preference for wide bit widths: the action logits start
        at ``wide_prior * j / (n - 1)`` for the j-th of n widths (narrowest first), so
        the first episodes sample near W8A8, where policies stay within the bound, and
        the agent learns its way down instead of up from policies whose accuracy has
        collapsed (0: uniform, stable-baselines3's own start). It uses no evaluation.
    """

    learning_rate: float = 1e-3
    episodes_per_update: int = 4
    minibatches: int = 2
    n_epochs: int = 10
    gamma: float = 1.0
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    net_arch: tuple[int, ...] = (64, 64)
    reward_scale: float = 0.01
    max_episodes_factor: int = 10
    wide_prior: float = 0.0

    def __post_init__(self) -> None:
        if self.episodes_per_update < 1 or self.minibatches < 1 or self.n_epochs < 1:
            raise CimdseError("PPO: episodes_per_update, minibatches and n_epochs must be >= 1")
        if not self.learning_rate > 0 or not self.reward_scale > 0:
            raise CimdseError("PPO: learning_rate and reward_scale must be > 0")
        if not self.wide_prior >= 0:
            raise CimdseError("PPO: wide_prior must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["net_arch"] = list(self.net_arch)
        return d


class _ScaledReward(gym.RewardWrapper):
    """Multiplies the reward seen by the learner; the env and the history keep the true one."""

    def __init__(self, env: gym.Env, scale: float) -> None:
        super().__init__(env)
        self.scale = scale

    def reward(self, reward: float) -> float:
        return reward * self.scale


class _StopWhenSpent(BaseCallback):
    """Stops learning once the method's budget is spent or the episode cap is reached."""

    def __init__(self, recorder: MethodRecorder, env: BitWidthEnv, max_episodes: int) -> None:
        super().__init__()
        self.recorder = recorder
        self.bwenv = env
        self.max_episodes = max_episodes
        self.updates = 0

    def _on_rollout_end(self) -> None:
        self.updates += 1

    def _on_step(self) -> bool:
        done = bool(self.locals.get("dones", [False])[0])
        episodes = self.bwenv.episode + (1 if done else 0)
        return not (self.recorder.exhausted or episodes >= self.max_episodes)


@dataclass
class SearchStats:
    episodes: int = 0
    updates: int = 0
    timesteps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


AGENT_SUFFIX = ".pt"
_FORMAT = "cimdse-agent"
_VERSION = 1
_MAX_AGENT_BYTES = 64 << 20  # a (64, 64) MLP agent is ~100 kB; anything far larger is not one


@dataclass(frozen=True)
class AgentFile:
    """A saved agent, as data: hyperparameters, the env's shape, the tensors.

    :param config: the hyperparameters it was trained with (a continued search keeps them)
    :param obs_dim: observation length of the env it was trained on
    :param n_choices: widths per action dimension
    :param timesteps: env steps it has learned from
    :param policy: the policy's ``state_dict`` (tensors)
    :param optimizer: the optimizer's ``state_dict`` (tensors and numbers)
    """

    config: PPOConfig
    obs_dim: int
    n_choices: int
    timesteps: int
    policy: dict[str, torch.Tensor]
    optimizer: dict[str, Any]

    def settings_json(self) -> str:
        doc = {"format": _FORMAT, "version": _VERSION, "ppo": self.config.as_dict(), "obs_dim": self.obs_dim,
               "n_choices": self.n_choices, "timesteps": self.timesteps}  # fmt: skip
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
            PPOConfig(**ppo), int(settings["obs_dim"]), int(settings["n_choices"]), int(settings["timesteps"]),
            dict(doc["policy"]), dict(doc["optimizer"]),
        )  # fmt: skip
        if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in agent.policy.items()):
            raise ValueError("policy")
    except CimdseError:
        raise
    except Exception as err:  # a torch file, but not an agent
        raise _refuse(path, f"not a cimdse agent file ({type(err).__name__}: {first_line(err)})") from None
    return agent


class PPOAgent:
    """A seeded PPO learner on one env; ``search`` spends a method's budget.

    :param env: the environment; its ``score`` should be the method's recorder
    :param config: hyperparameters (ignored when ``checkpoint`` is given: a loaded
        agent keeps its own, so a continued search learns the way it started)
    :param seed: seeds PPO (network init, action sampling)
    :param checkpoint: an agent from :func:`read_agent` (or its path) to continue from
    """

    def __init__(
        self,
        env: BitWidthEnv,
        config: PPOConfig | None = None,
        seed: int = 0,
        checkpoint: AgentFile | str | Path | None = None,
    ) -> None:
        self.env = env
        saved = read_agent(checkpoint) if isinstance(checkpoint, (str, Path)) else checkpoint
        self.config = saved.config if saved is not None else (config or PPOConfig())
        self.seed = seed
        wrapped = _ScaledReward(env, self.config.reward_scale)
        n_steps = self.config.episodes_per_update * env.space.n_layers
        self.model = PPO(
            "MlpPolicy",
            wrapped,
            learning_rate=self.config.learning_rate,
            n_steps=n_steps,
            batch_size=max(2, n_steps // self.config.minibatches),
            n_epochs=self.config.n_epochs,
            gamma=self.config.gamma,
            gae_lambda=self.config.gae_lambda,
            clip_range=self.config.clip_range,
            ent_coef=self.config.ent_coef,
            vf_coef=self.config.vf_coef,
            max_grad_norm=self.config.max_grad_norm,
            policy_kwargs={"net_arch": {"pi": list(self.config.net_arch), "vf": list(self.config.net_arch)}},
            seed=seed,
            device="cpu",
            verbose=0,
        )
        if saved is not None:
            self._restore(saved)
        elif self.config.wide_prior:
            self._prefer_wide(env.space.n_choices)
        self.stats = SearchStats()

    def _prefer_wide(self, n: int) -> None:
        """Bias the initial action logits towards wide widths (see ``PPOConfig.wide_prior``)."""
        ramp = torch.linspace(0.0, self.config.wide_prior, n) if n > 1 else torch.zeros(1)
        with torch.no_grad():
            self.model.policy.action_net.bias.copy_(ramp.repeat(2))

    def _restore(self, saved: AgentFile) -> None:
        obs_dim = int(self.env.observation_space.shape[0])
        if (saved.obs_dim, saved.n_choices) != (obs_dim, self.env.space.n_choices):
            raise CimdseError(
                f"the agent does not fit this search: it was trained on {saved.obs_dim} features and "
                f"{saved.n_choices} widths per choice, this search has {obs_dim} and {self.env.space.n_choices}"
            )
        try:
            self.model.policy.load_state_dict(saved.policy)
            self.model.policy.optimizer.load_state_dict(saved.optimizer)
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise CimdseError(f"the agent's tensors do not fit its settings ({first_line(err)})") from None
        self.model.num_timesteps = saved.timesteps

    def search(self, recorder: MethodRecorder) -> SearchStats:
        """Learn until ``recorder`` has ``recorder.budget`` distinct policies (or the episode cap)."""
        max_episodes = max(1, self.config.max_episodes_factor * recorder.budget)
        stop = _StopWhenSpent(recorder, self.env, self.env.episode + 1 + max_episodes)
        start = self.model.num_timesteps
        self.model.learn(
            total_timesteps=max_episodes * self.env.space.n_layers,
            callback=stop,
            reset_num_timesteps=False,
        )
        self.stats = SearchStats(
            episodes=self.env.episode + 1, updates=stop.updates, timesteps=self.model.num_timesteps - start
        )
        return self.stats

    def state(self) -> AgentFile:
        """The agent as data (see :class:`AgentFile`)."""
        return AgentFile(
            self.config,
            int(self.env.observation_space.shape[0]),
            self.env.space.n_choices,
            int(self.model.num_timesteps),
            {k: v.detach().clone() for k, v in self.model.policy.state_dict().items()},
            self.model.policy.optimizer.state_dict(),
        )

    def save(self, path: str | Path) -> Path:
        """Write the agent (weights, optimizer state, settings as JSON) to ``path``, atomically."""
        return save_agent(self.state(), path)
