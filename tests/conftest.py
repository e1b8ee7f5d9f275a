"""Test-wide settings and fixtures: JAX on the CPU whatever the machine has, and small real data."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import gymnasium as gym  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def hopper_random_npz(tmp_path_factory):
    """2000 real Hopper-v5 transitions under uniform random actions, as a synthetic-format .npz."""
    from synther_jax.data import write_synthetic
    from synther_jax.data.collection import rollout, uniform_random_policy
    from synther_jax.data.flatten import episodes_to_transitions

    env = gym.make("Hopper-v5")
    episodes = rollout(env, uniform_random_policy(env.action_space, 0), 2000, seed=0)
    path = str(tmp_path_factory.mktemp("data") / "hopper_random.npz")
    write_synthetic(path, episodes_to_transitions(episodes), source_dataset="hopper-random", config={}, seed=0,
                    model_checkpoint=None, env_id="Hopper-v5")
    return path
