"""The search agent: stable-baselines3 PPO on :class:`~cimdse.search.env.BitWidthEnv`.

PPO (clipped policy gradient, Schulman et al. 2017) replaces HAQ/CIM-AQ's DDPG: the
action space is discrete (bit widths), episodes are short (one step per layer) and
the reward comes only at the end, which suits an on-policy method with
``gamma = 1``. The agent runs until its method has evaluated ``budget`` distinct
policies; episodes that repeat a policy are answered from the cache, cost no
evaluation and still train the agent (capped at ``max_episodes_factor * budget``
episodes once the policy has converged). Checkpoints (SB3 ``.zip``: weights,
optimizer state, hyperparameters) let a later search continue from a trained agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback

from cimdse.errors import CimdseError, first_line
from cimdse.files import atomic_write
from cimdse.search.config import PPOConfig
from cimdse.search.env import BitWidthEnv
from cimdse.search.evaluator import MethodRecorder

__all__ = ["PPOAgent", "PPOConfig"]


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


class PPOAgent:
    """A seeded PPO learner on one env; ``search`` spends a method's budget.

    :param env: the environment; its ``score`` should be the method's recorder
    :param config: hyperparameters (ignored when ``checkpoint`` is given: a loaded
        agent keeps its own, so a continued search learns the way it started)
    :param seed: seeds PPO (network init, action sampling)
    :param checkpoint: a ``.zip`` from :meth:`save` to continue from
    """

    def __init__(
        self, env: BitWidthEnv, config: PPOConfig | None = None, seed: int = 0, checkpoint: str | Path | None = None
    ) -> None:
        self.env = env
        self.config = config or PPOConfig()
        self.seed = seed
        wrapped = _ScaledReward(env, self.config.reward_scale)
        n_steps = self.config.episodes_per_update * env.space.n_layers
        if checkpoint is not None:
            self.model = self._load(checkpoint, wrapped)
        else:
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
            if self.config.wide_prior:
                self._prefer_wide(env.space.n_choices)
        self.stats = SearchStats()

    def _prefer_wide(self, n: int) -> None:
        """Bias the initial action logits towards wide widths (see ``PPOConfig.wide_prior``)."""
        ramp = torch.linspace(0.0, self.config.wide_prior, n) if n > 1 else torch.zeros(1)
        with torch.no_grad():
            self.model.policy.action_net.bias.copy_(ramp.repeat(2))

    def _load(self, path: str | Path, env: gym.Env) -> PPO:
        path = Path(path)
        if not path.is_file():
            raise CimdseError(f"{path}: no such agent checkpoint")
        try:
            model = PPO.load(path, env=env, device="cpu")
        except ValueError as err:  # spaces differ
            raise CimdseError(f"{path}: the agent does not fit this search ({first_line(err)})") from None
        except Exception as err:  # not a zip, truncated, foreign
            raise CimdseError(f"{path}: not a readable agent checkpoint ({type(err).__name__})") from None
        model.set_random_seed(self.seed)
        return model

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

    def save(self, path: str | Path) -> Path:
        """Write the agent (weights, optimizer, hyperparameters) to ``path`` (.zip), atomically."""
        return atomic_write(path, self.model.save)
