"""Sharding over 8 CPU devices: same results as one device, and the data really on all 8.

JAX fixes its device count when it starts, so the 8-device checks run in a child pytest process
started with `--xla_force_host_platform_device_count=8` (`test_eight_device_checks_pass`); in the
parent process they are skipped and only the launcher and the multi-host switch run.
"""
import dataclasses
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from synther_jax import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_DEVICES = 8
IN_CHILD = os.environ.get("SYNTHER_SHARDING_CHILD") == "1"
eight_devices = pytest.mark.skipif(not IN_CHILD, reason="runs in the 8-device child of test_eight_device_checks_pass")


@pytest.mark.slow
@pytest.mark.skipif(IN_CHILD, reason="this is the parent")
def test_eight_device_checks_pass():
    env = {**os.environ, "SYNTHER_SHARDING_CHILD": "1", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={NUM_DEVICES}"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", __file__], cwd=ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-3000:]
    # All 8-device tests ran (2 are parent-only); warnings from dependencies may follow the counts.
    assert re.search(r"^6 passed, 2 skipped( in|,)", result.stdout, re.M), result.stdout[-2000:]


def _on_all_devices(x: jax.Array, split: bool):
    """Asserts `x` has a shard on each of the 8 devices, a slice of the leading axis or a full copy."""
    shards = x.addressable_shards
    assert sorted(s.device.id for s in shards) == list(range(NUM_DEVICES))
    expected = (x.shape[0] // NUM_DEVICES, *x.shape[1:]) if split else x.shape
    assert all(s.data.shape == expected for s in shards)


@eight_devices
def test_helpers_place_data_on_every_device():
    assert jax.device_count() == NUM_DEVICES
    mesh = sharding.data_mesh()
    tree = {"w": np.arange(48.0).reshape(16, 3), "b": np.arange(16)}
    split = sharding.shard_leading_axis(tree, mesh)
    for leaf in jax.tree.leaves(split):
        _on_all_devices(leaf, split=True)
    np.testing.assert_array_equal(split["w"].addressable_shards[3].data, tree["w"][6:8])  # device 3: rows 6-7
    copied = sharding.replicate(tree, mesh)
    for leaf in jax.tree.leaves(copied):
        _on_all_devices(leaf, split=False)
    np.testing.assert_array_equal(sharding.to_host(split["w"]), tree["w"])

    assert sharding.mesh_for_axis(4).size == 4 and sharding.mesh_for_axis(12).size == 4
    assert sharding.auto_mesh().size == NUM_DEVICES
    with pytest.raises(ValueError, match="multiple of 8"):
        sharding.shard_leading_axis(np.zeros((12, 2)), mesh)
    with pytest.raises(ValueError, match="common leading axis"):
        sharding.shard_leading_axis({"a": np.zeros((8, 2)), "b": np.zeros((16,))}, mesh)


def _rows(n=400, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 5)).astype(np.float32)
    rows[:, -1] = rng.random(n) < 0.2
    return rows


@eight_devices
def test_sharded_diffusion_training_matches_one_device_and_resumes(tmp_path):
    from synther_jax.diffusion import DiffusionConfig, train_diffusion
    from synther_jax.diffusion.model import init_state
    config = DiffusionConfig(width=32, depth=2, dim_t=16, num_train_steps=40, steps_per_call=20, checkpoint_every=20,
                             batch_size=64, num_sample_steps=8)
    mesh = sharding.data_mesh()
    train = lambda **kwargs: train_diffusion(_rows(), config, jax.random.PRNGKey(0), (4,), progress=False, **kwargs)
    single = train()
    sharded = train(mesh=mesh, workdir=str(tmp_path / "straight"))
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
        _on_all_devices(b, split=False)
        # Same minibatches and noise; only the order of the gradient sums differs.
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
    initial = init_state(config, jax.random.split(jax.random.PRNGKey(0))[0], 5)  # as train_diffusion draws it
    moved = max(float(np.abs(np.asarray(p) - np.asarray(q)).max())
                for p, q in zip(jax.tree.leaves(single.params), jax.tree.leaves(initial.params)))
    assert moved > 1e-3  # the tolerance above is far below what training changes

    def crash_after_first_checkpoint(step, metrics):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(mesh=mesh, workdir=str(tmp_path / "resumed"), log_fn=crash_after_first_checkpoint)
    resumed = train(mesh=mesh, workdir=str(tmp_path / "resumed"))
    for a, b in zip(jax.tree.leaves(sharded.params), jax.tree.leaves(resumed.params)):
        _on_all_devices(b, split=False)
        np.testing.assert_array_equal(np.asarray(b), np.asarray(a))

    with pytest.raises(ValueError, match="multiple of the number of devices"):
        train_diffusion(_rows(), dataclasses.replace(config, batch_size=60), jax.random.PRNGKey(0), progress=False,
                        mesh=mesh)


@eight_devices
def test_sharded_generation_matches_one_device_and_splits_chunks():
    from synther_jax.diffusion import DiffusionConfig, generate, train_diffusion
    from synther_jax.diffusion.model import with_seed_axis
    from synther_jax.diffusion.sampling import sample_rows
    config = DiffusionConfig(width=32, depth=2, dim_t=16, num_train_steps=20, steps_per_call=20, batch_size=64,
                             num_sample_steps=8)
    model = train_diffusion(_rows(), config, jax.random.PRNGKey(1), (4,), progress=False)
    mesh = sharding.data_mesh()
    single = generate(model, 150, jax.random.PRNGKey(2), chunk_size=64, progress=False)
    sharded = generate(model, 150, jax.random.PRNGKey(2), chunk_size=64, progress=False, mesh=mesh)
    assert sharded.shape == (150, 5)
    np.testing.assert_allclose(sharded, single, rtol=1e-4, atol=1e-4)

    chunk = sample_rows(sharding.replicate(with_seed_axis(model), mesh), jax.random.PRNGKey(2)[None], 64, mesh=mesh)
    _on_all_devices(chunk[0], split=True)
    # A chunk size that does not divide evenly is rounded up on the devices and cut on the host.
    assert generate(model, 50, jax.random.PRNGKey(2), chunk_size=20, progress=False, mesh=mesh).shape == (50, 5)


@eight_devices
def test_seed_axis_of_a_learner_shards_and_matches_one_device():
    from agents import td3_bc
    rng = np.random.default_rng(0)
    dataset = {"observations": rng.normal(size=(256, 3)).astype(np.float32),
               "actions": rng.uniform(-1, 1, size=(256, 2)).astype(np.float32),
               "rewards": rng.normal(size=256).astype(np.float32),
               "next_observations": rng.normal(size=(256, 3)).astype(np.float32),
               "terminals": (rng.random(256) < 0.1).astype(np.float32)}
    keys = jax.random.split(jax.random.PRNGKey(0), NUM_DEVICES)
    states = td3_bc.init_seeds(keys, 3, 2, hidden_dims=(32, 32))
    update_keys = jax.random.split(jax.random.PRNGKey(1), NUM_DEVICES)
    single, _ = td3_bc.update_steps_seeds(states, dataset, update_keys, num_steps=20, batch_size=32)

    mesh = sharding.data_mesh()
    sharded, metrics = td3_bc.update_steps_seeds(sharding.shard_leading_axis(states, mesh),
                                                 sharding.replicate(dataset, mesh),
                                                 sharding.shard_leading_axis(update_keys, mesh), num_steps=20,
                                                 batch_size=32)
    for a, b in zip(jax.tree.leaves(single.actor_params), jax.tree.leaves(sharded.actor_params)):
        _on_all_devices(b, split=True)  # one seed per device
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=2e-5)  # 20 Adam steps of float32 drift


@eight_devices
def test_seed_axis_of_the_denoisers_shards_and_matches_one_device():
    """One denoiser per seed (shared rows), the seeds split over the 8 devices, trained and sampled."""
    from synther_jax.diffusion import DiffusionConfig, generate, iterate_samples, train_diffusion
    config = DiffusionConfig(width=32, depth=2, dim_t=16, num_train_steps=20, steps_per_call=20, batch_size=64,
                             num_sample_steps=8)
    keys = jax.random.split(jax.random.PRNGKey(3), NUM_DEVICES)
    single = train_diffusion(_rows(), config, keys, (4,), progress=False)
    mesh = sharding.data_mesh()
    sharded = train_diffusion(_rows(), config, keys, (4,), progress=False, mesh=mesh)
    for a, b in zip(jax.tree.leaves(single.params), jax.tree.leaves(sharded.params)):
        _on_all_devices(b, split=True)  # one seed's denoiser per device
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=2e-5)
    rows = np.concatenate(list(iterate_samples(sharded, 50, keys, chunk_size=32, progress=False, mesh=mesh)), axis=1)
    np.testing.assert_allclose(rows, generate(single, 50, keys, chunk_size=32, progress=False), atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        train_diffusion(_rows(), config, keys[:6], progress=False, mesh=mesh)


@eight_devices
def test_training_really_runs_data_parallel():
    """The compiled sharded step reduces gradients across devices: its per-device batch is 1/8."""
    from synther_jax.diffusion import DiffusionConfig
    from synther_jax.diffusion.model import init_state, with_seed_axis
    from synther_jax.diffusion.training import train_steps
    config = DiffusionConfig(width=32, depth=2, dim_t=16, num_train_steps=10)
    mesh = sharding.data_mesh()
    state = sharding.replicate(with_seed_axis(init_state(config, jax.random.PRNGKey(0), 5)), mesh)
    data = sharding.replicate(np.zeros((100, 5), np.float32), mesh)
    hlo = train_steps.lower(state, data, jax.random.PRNGKey(1)[None], config=config, num_steps=2, batch_size=64,
                            shared_data=True, batch_mesh=mesh).compile().as_text()
    assert "all-reduce" in hlo
    # hidden activations of 64 / 8 rows per device (with or without the seed axis of 1)
    assert "f32[8,32]" in hlo and not re.search(r"f32\[(1,)?64,32\]", hlo)


@pytest.mark.skipif(IN_CHILD, reason="needs the single CPU device of the parent")
def test_one_device_gets_no_mesh():
    assert jax.device_count() == 1 and sharding.auto_mesh() is None
