"""The hot loops run without a hidden host round trip: each is called under
`jax.transfer_guard("disallow")`, which fails on any implicit copy between host and device (a NumPy
array or Python number fed in, a value read back inside). On an accelerator such a copy would stall
every call; here the CPU checks it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import OFFLINE_LEARNERS, PIXEL_LEARNERS, sac
from pipelines.online_loop import update_agents
from synther_jax import replay
from synther_jax.data.pixel_datasets import FIRST, LAST, MID, PixelDataset
from synther_jax.diffusion import DiffusionConfig
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.model import Diffusion, init_state, with_seed_axis
from synther_jax.diffusion.sampling import sample_rows
from synther_jax.diffusion.training import train_steps

OBS_DIM, ACTION_DIM, ROWS = 5, 2, 64


def device_dataset(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {"observations": rng.normal(size=(ROWS, OBS_DIM)), "actions": rng.uniform(-1, 1, (ROWS, ACTION_DIM)),
              "rewards": rng.normal(size=ROWS), "next_observations": rng.normal(size=(ROWS, OBS_DIM)),
              "terminals": (rng.uniform(size=ROWS) < 0.1)}
    return jax.device_put({key: value.astype(np.float32) for key, value in arrays.items()})


def test_the_guard_catches_an_implicit_copy():
    """The check can fail: a NumPy array fed to a jitted function is an implicit host-to-device copy."""
    double = jax.jit(lambda x: 2 * x)
    with jax.transfer_guard("disallow"), pytest.raises(Exception, match="[Dd]isallowed"):
        double(np.ones(3, np.float32))


def test_diffusion_training_chunk_and_sampler():
    config = DiffusionConfig(width=32, depth=1, dim_t=16, num_train_steps=10, num_sample_steps=4)
    dim = 2 * OBS_DIM + ACTION_DIM + 2
    state = with_seed_axis(init_state(config, jax.random.PRNGKey(0), dim))  # one model: a seed axis of 1
    data = jax.device_put(np.random.default_rng(1).normal(size=(ROWS, dim)).astype(np.float32))
    keys, normalizer = jax.random.PRNGKey(2)[None], with_seed_axis(Normalizer(jnp.zeros(dim), jnp.ones(dim)))
    with jax.transfer_guard("disallow"):
        state, loss = train_steps(state, data, keys, config=config, num_steps=5, batch_size=16, shared_data=True)
        rows = sample_rows(Diffusion(config, dim, state.ema_params, state.constants, normalizer), keys, num=8)
    assert int(jax.device_get(state.step)[0]) == 5 and np.all(np.isfinite(jax.device_get(loss)))
    assert jax.device_get(rows).shape == (1, 8, dim)


@pytest.mark.parametrize("algorithm", sorted(OFFLINE_LEARNERS))
def test_offline_learners_update_steps_seeds(algorithm):
    learner = OFFLINE_LEARNERS[algorithm][0]
    hyperparameters = {"hidden_dims": (16, 16)}
    if algorithm == "edac":
        hyperparameters["num_critics"] = 3
    states = learner.init_seeds(jax.random.split(jax.random.PRNGKey(3), 2), OBS_DIM, ACTION_DIM, **hyperparameters)
    dataset, keys = device_dataset(), jax.random.split(jax.random.PRNGKey(4), 2)
    with jax.transfer_guard("disallow"):
        states, metrics = learner.update_steps_seeds(states, dataset, keys, num_steps=3, batch_size=8)
    assert all(np.all(np.isfinite(value)) for value in jax.device_get(metrics).values())


def test_online_utd_scan():
    num_seeds = 2
    states = sac.init_seeds(jax.random.split(jax.random.PRNGKey(5), num_seeds), OBS_DIM, ACTION_DIM,
                            hidden_dims=(16, 16), utd_ratio=4, batch_size=8)
    buffer = replay.insert(replay.create_buffer(ROWS, OBS_DIM, ACTION_DIM), device_dataset())
    stacked = jax.tree.map(lambda x: jnp.stack([x] * num_seeds), buffer)
    real, synthetic, key = stacked, jax.tree.map(jnp.copy, stacked), jax.random.PRNGKey(6)
    with jax.transfer_guard("disallow"):
        states, metrics = update_agents(states, real, synthetic, key, synthetic_ratio=0.5)
    assert all(np.all(np.isfinite(value)) for value in jax.tree.leaves(jax.device_get(metrics)))


@pytest.mark.parametrize("algorithm", sorted(PIXEL_LEARNERS))
def test_pixel_learners_update_steps_seeds(algorithm):
    """Frames stay uint8 on the device and minibatches are stacked there: no copy per update."""
    learner = PIXEL_LEARNERS[algorithm][0]
    rng, size, episodes, steps = np.random.default_rng(7), 16, 3, 5
    step_types = np.tile([FIRST] + [MID] * (steps - 2) + [LAST], episodes).astype(np.uint8)
    n = len(step_types)
    data = PixelDataset(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8),
                        rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32), rng.uniform(size=n).astype(np.float32),
                        np.ones(n, np.float32), step_types)
    keys = jax.random.split(jax.random.PRNGKey(8), 2)
    states = learner.init_seeds(keys, (9, size, size), ACTION_DIM, hidden_dim=16, feature_dim=5)
    store = data.device_store()
    with jax.transfer_guard("disallow"):
        states, metrics = learner.update_steps_seeds(states, store, keys, num_steps=2, batch_size=4)
    assert all(np.all(np.isfinite(value)) for value in jax.device_get(metrics).values())
