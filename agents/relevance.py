"""Relevance functions F(s, a, r, s'): the scores PGR conditions its diffusion model on.

    curiosity  the ICM forward model's error (agents/icm.py): PGR's default and its only released one
    return     Q(s, pi(s)), the critic ensemble's mean at the policy's mean action
    td         |r + gamma (1 - d) min_i Q_target_i(s', pi(s')) - mean_i Q_i(s, a)|, at mean actions
    reward     r

Each is a pure function of the learners' states and a batch; `label` applies one to a whole
buffer (or any rows) in fixed-size chunks inside one jitted `lax.map`, so memory stays bounded
and one compilation serves every retrain. The return and TD forms use the policy's mean action
and leave out the entropy term, so a label does not depend on a random draw.
"""
from functools import partial
from typing import Dict, Optional

import jax
import jax.numpy as jnp

from agents import icm, sac

RELEVANCES = ("curiosity", "return", "td", "reward")
Batch = Dict[str, jax.Array]


def _mean_actions(state: sac.SACState, observations: jax.Array) -> jax.Array:
    return sac.act(state, observations, jax.random.PRNGKey(0), deterministic=True)


def relevance(kind: str, agent: sac.SACState, curiosity_model: Optional[icm.ICMState], batch: Batch) -> jax.Array:
    """F of `kind` for every row of `batch`, shape (B,)."""
    if kind == "curiosity":
        return icm.curiosity(curiosity_model, batch)
    if kind == "reward":
        return batch["rewards"]
    observations = batch["observations"]
    if kind == "return":
        return jnp.mean(agent.critic.apply_fn(agent.critic.params, observations, _mean_actions(agent, observations)),
                        axis=0)
    if kind == "td":
        next_observations = batch["next_observations"]
        next_q = jnp.min(agent.critic.apply_fn(agent.target_critic_params, next_observations,
                                               _mean_actions(agent, next_observations)), axis=0)
        target = batch["rewards"] + agent.config.discount * (1.0 - batch["terminals"]) * next_q
        q = jnp.mean(agent.critic.apply_fn(agent.critic.params, observations, batch["actions"]), axis=0)
        return jnp.abs(target - q)
    raise ValueError(f"relevance must be one of {RELEVANCES}, got {kind!r}.")


@partial(jax.jit, static_argnames=("kind", "chunk_size"))
def label(kind: str, agent: sac.SACState, curiosity_model: Optional[icm.ICMState], rows: Batch,
          chunk_size: int = 4096) -> jax.Array:
    """F for every row of `rows` (arrays with a leading axis N), computed `chunk_size` rows at a
    time; the last chunk is padded and its padding dropped."""
    num = rows["rewards"].shape[0]
    num_chunks = -(-num // chunk_size)
    pad = lambda x: jnp.pad(x, [(0, num_chunks * chunk_size - num)] + [(0, 0)] * (x.ndim - 1))
    chunks = jax.tree.map(lambda x: pad(x).reshape(num_chunks, chunk_size, *x.shape[1:]), rows)
    labels = jax.lax.map(lambda chunk: relevance(kind, agent, curiosity_model, chunk), chunks)
    return labels.reshape(-1)[:num]
