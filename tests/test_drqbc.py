"""DrQ+BC and pixel BC: augmentation, encoder size, the actor loss by hand, the frozen latent stage."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import drqbc, pixel_bc
from agents.pixel_networks import Encoder, encoder_output_dim, random_shift, sample_action
from synther_jax.data.latents import latent_dim, latent_transitions, learner_batch
from synther_jax.data.pixel_datasets import FIRST, LAST, MID, PixelDataset, stacked_frames

SMALL = dict(hidden_dim=16, feature_dim=5)


def test_random_shift_matches_numpy_edge_padding():
    images = np.random.default_rng(0).integers(0, 256, (64, 9, 12, 12), dtype=np.uint8)
    key, pad = jax.random.PRNGKey(3), 4
    shifted = np.asarray(jax.jit(random_shift, static_argnums=2)(jnp.asarray(images), key, pad))
    offsets = np.asarray(jax.vmap(lambda k: jax.random.randint(k, (2,), 0, 2 * pad + 1))(jax.random.split(key, 64)))
    assert shifted.dtype == np.uint8 and len({tuple(o) for o in offsets}) > 20  # shifts really vary
    for image, out, (dy, dx) in zip(images, shifted, offsets):
        padded = np.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        np.testing.assert_array_equal(out, padded[:, dy:dy + 12, dx:dx + 12])


def test_encoder_gives_32x35x35_features_at_84_pixels():
    frames = jnp.zeros((2, 9, 84, 84), jnp.uint8)
    params = Encoder().init(jax.random.PRNGKey(0), frames)
    assert Encoder().apply(params, frames).shape == (2, 32 * 35 * 35) == (2, encoder_output_dim(84))
    assert encoder_output_dim(64) == 32 * 25 * 25


def _mlp(params, x):
    """A float64 ReLU MLP from flax parameters (Dense layers in order)."""
    layers = [params[k] for k in sorted(params, key=lambda k: int(k.split("_")[-1]))]
    for i, layer in enumerate(layers):
        x = x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def test_drqbc_actor_loss_by_hand():
    state = drqbc.init(jax.random.PRNGKey(0), (9, 16, 16), 3, **SMALL)
    rng = np.random.default_rng(1)
    actor_features = rng.uniform(-1, 1, (7, 5)).astype(np.float32)
    critic_features = rng.uniform(-1, 1, (7, 5)).astype(np.float32)
    data_actions = rng.uniform(-1, 1, (7, 3)).astype(np.float32)
    key, std = jax.random.PRNGKey(4), 0.4
    loss, metrics = drqbc.actor_loss(state.actor_params["head"], state.critic_params["head"], state.config,
                                     actor_features, critic_features, data_actions, std, key)

    mean = np.tanh(_mlp(state.actor_params["head"]["params"]["MLP_0"], actor_features.astype(np.float64)))
    noise = np.clip(std * np.asarray(jax.random.normal(key, mean.shape), np.float64), -0.3, 0.3)
    actions = np.clip(mean + noise, -1 + 1e-6, 1 - 1e-6)
    critics = state.critic_params["head"]["params"]["MLP_0"]
    x = np.concatenate([critic_features, actions], 1)
    q = np.min([_mlp(jax.tree.map(lambda p: p[i], critics), x)[:, 0] for i in range(2)], axis=0)
    expected = -2.5 / np.abs(q).mean() * q.mean() + ((actions - data_actions) ** 2).mean()
    np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
    np.testing.assert_allclose(float(metrics["lambda"]), 2.5 / np.abs(q).mean(), rtol=2e-5)


def test_sampled_action_is_clipped_with_a_straight_through_gradient():
    mean = jnp.array([0.95, 0.0, -0.95])
    grad = jax.grad(lambda m: sample_action(m, 1.0, 0.3, jax.random.PRNGKey(0)).sum())(mean)
    actions = sample_action(mean, 1.0, 0.3, jax.random.PRNGKey(0))
    assert np.all(np.abs(np.asarray(actions - mean)) <= 0.3 + 1e-6) and np.all(np.abs(np.asarray(actions)) < 1)
    np.testing.assert_array_equal(np.asarray(grad), 1.0)


def _pixel_store(size=16, action_dim=3, episodes=4, steps=6):
    """Random frames whose actions are a function of the frame, in whole episodes."""
    rng = np.random.default_rng(0)
    n = episodes * steps
    frames = rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8)
    actions = np.tanh(frames.reshape(n, -1)[:, :action_dim] / 64.0 - 2.0).astype(np.float32)
    step_types = np.tile([FIRST] + [MID] * (steps - 2) + [LAST], episodes).astype(np.uint8)
    return PixelDataset(frames, actions, rng.uniform(0, 1, n).astype(np.float32), np.ones(n, np.float32), step_types)


@pytest.mark.parametrize("learner", [drqbc, pixel_bc])
def test_seeds_update_in_one_scan_and_the_latent_stage_moves_only_the_heads(learner):
    data = _pixel_store()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states = learner.init_seeds(keys, (9, 16, 16), 3, **SMALL)
    states, metrics = learner.update_steps_seeds(states, data.device_store(), keys, num_steps=3, batch_size=8)
    assert np.asarray(states.step).tolist() == [3, 3] and np.all(np.isfinite(np.asarray(metrics["actor_loss"])))
    assert not np.allclose(jax.tree.leaves(states.encoder_params)[0][0], jax.tree.leaves(states.encoder_params)[0][1])
    actions = learner.act(jax.tree.map(lambda x: x[0], states), jnp.asarray(data.frames[:4].repeat(3, axis=1)),
                          jax.random.PRNGKey(0))
    assert actions.shape == (4, 3) and np.all(np.abs(np.asarray(actions)) <= 1)

    # Encode the data into latents, round-trip them through the row layout, train the heads on them.
    state = jax.tree.map(lambda x: x[0], states)
    store = data.device_store()
    ends = store["ends"]
    features = learner.features(state, stacked_frames(store["frames"], store["stacks"], ends - 1), jax.random.PRNGKey(1))
    next_features = learner.features(state, stacked_frames(store["frames"], store["stacks"], ends))
    latents = latent_transitions(features, next_features, np.asarray(store["actions"]), np.asarray(store["rewards"]),
                                 learner.TRUNKS)
    rows = latents.to_rows(terminal_column=False)
    assert rows.shape == (len(ends), latent_dim(learner.TRUNKS, 5, 3))
    batch = learner_batch(type(latents).from_rows(rows, latents.obs_dim, 3, terminal_column=False), learner.TRUNKS)
    for name in learner.TRUNKS:
        np.testing.assert_array_equal(batch[name], np.asarray(features[name]))
        np.testing.assert_array_equal(batch[f"next_{name}"], np.asarray(next_features[name]))
    np.testing.assert_array_equal(batch["actions"], np.asarray(store["actions"]))

    latent_states = learner.begin_latent_stage_seeds(states, keys)
    trained, _ = learner.latent_update_steps_seeds(latent_states, jax.tree.map(jnp.asarray, batch), keys,
                                                   num_steps=3, batch_size=8)
    frozen = lambda s: (s.encoder_params, s.actor_params["trunk"], getattr(s, "critic_params", {}).get("trunk"))
    jax.tree.map(np.testing.assert_array_equal, frozen(trained), frozen(states))
    head = lambda s: s.actor_params["head"]
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(head(trained)), jax.tree.leaves(head(states))))
