"""Latent transitions of a pixel learner (paper Appendix E) in SynthER's row layout.

A pixel transition (s, a, r, s') becomes, with h = f(aug(s)) and h' = f(aug(s')) from the frozen
encoder f and each of the learner's trunks (actor, critic),

    [actor_trunk(h), critic_trunk(h), a, r, actor_trunk(h'), critic_trunk(h')]

4 x 50 + |a| + 1 numbers (207 for cheetah-run; BC has only the actor trunk: 2 x 50 + |a| + 1).
That is exactly `Transitions.to_rows(terminal_column=False)` of transitions whose observation
is the trunks' features side by side, so the diffusion trainer, the synthetic-data writer and the
fidelity report take latents unchanged. DMC tasks never terminate: no terminal column.
"""
from typing import Dict, Sequence

import numpy as np

from synther_jax.data.transitions import Transitions


def latent_dim(trunks: Sequence[str], feature_dim: int, action_dim: int) -> int:
    return 2 * len(trunks) * feature_dim + action_dim + 1


def latent_transitions(features: Dict[str, np.ndarray], next_features: Dict[str, np.ndarray], actions: np.ndarray,
                       rewards: np.ndarray, trunks: Sequence[str]) -> Transitions:
    """The latent transitions, the trunks' features concatenated in the order of `trunks`."""
    observations = np.concatenate([np.asarray(features[name]) for name in trunks], axis=1)
    next_observations = np.concatenate([np.asarray(next_features[name]) for name in trunks], axis=1)
    return Transitions(observations, actions, rewards, next_observations, np.zeros(len(rewards), np.float32))


def learner_batch(latents: Transitions, trunks: Sequence[str]) -> Dict[str, np.ndarray]:
    """What a learner's `update_latent` reads: each trunk's features of s (`actor`, `critic`) and of
    s' (`next_actor`, `next_critic`), the actions and the rewards."""
    if latents.obs_dim % len(trunks):
        raise ValueError(f"Latent observations of {latents.obs_dim} dims cannot hold the {len(trunks)} trunks "
                         f"{list(trunks)} equally; the latents come from another learner.")
    feature_dim = latents.obs_dim // len(trunks)
    batch = {"actions": latents.actions, "rewards": latents.rewards}
    for i, name in enumerate(trunks):
        block = slice(i * feature_dim, (i + 1) * feature_dim)
        batch[name], batch[f"next_{name}"] = latents.observations[:, block], latents.next_observations[:, block]
    return batch
