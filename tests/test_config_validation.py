"""Configs are checked before any work: every bad value fails fast with the fix in its message and
leaves the work directory empty; per-dataset settings follow the dataset actually loaded."""
import os
import subprocess
import sys
import time

import pytest

from configs import d4rl, online
from configs.checks import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _offline(**overrides):
    config = d4rl.get_config("walker2d")
    config.update(overrides)
    return config


@pytest.mark.parametrize("overrides, message", [
    ({"algorithm": "foo"}, "--config.algorithm='foo' is not a choice: use one of td3_bc, iql, edac"),
    ({"data": "fake"}, "--config.data='fake' is not a choice"),
    ({"augmentation": "gaussian"}, "--config.augmentation='gaussian' is not a choice"),
    ({"augmentation": "additive", "data": "real"}, "use --config.data=synthetic or mixed"),
    ({"denoiser_per_seed": True, "data": "real"}, "--config.data=real trains none: leave --config.denoiser_per_seed"),
    ({"denoiser_per_seed": True, "augmentation": "dynamics"}, "--config.augmentation=dynamics replaces the denoiser"),
    ({"num_samples": -5}, "--config.num_samples must be positive, got -5"),
    ({"num_samples": 0}, "--config.num_samples must be positive"),
    ({"num_seeds": 0}, "--config.num_seeds must be positive"),
    ({"batch_size": -1}, "--config.batch_size must be positive"),
    ({"eval_every": 0}, "--config.eval_every must be positive"),
    ({"eval_episodes": 0}, "--config.eval_episodes must be positive"),
    ({"agent_steps": 0}, "--config.agent_steps must be positive"),
    ({"seed": -1}, "--config.seed must be >= 0"),
    ({"real_fraction": 0.0}, "--config.real_fraction must lie in (0, 1]"),
    ({"real_fraction": 1.5}, "--config.real_fraction must lie in (0, 1]"),
    ({"terminal_threshold": 2.0}, "--config.terminal_threshold must lie in [0, 1]"),
    ({"dataset": ""}, "--config.dataset must name a dataset"),
])
def test_bad_offline_values_are_refused_with_the_fix(overrides, message):
    with pytest.raises(ConfigError) as error:
        d4rl.validate(_offline(**overrides))
    assert message in str(error.value)


@pytest.mark.parametrize("section, field, value, message", [
    ("diffusion", "width", -1, "width must be positive"),
    ("diffusion", "num_train_steps", 0, "num_train_steps must be positive"),
    ("diffusion", "num_sample_steps", 0, "num_sample_steps must be positive"),
    ("diffusion", "sample_chunk_size", 0, "sample_chunk_size must be positive"),
    ("diffusion", "learning_rate", 0.0, "learning_rate must be positive"),
    ("diffusion", "batch_size", -256, "batch_size must not be negative"),
    ("diffusion", "sigma_min", 100.0, "sigma_min (100.0) must be below sigma_max"),
    ("diffusion", "ema_decay", 1.0, "ema_decay must lie in [0, 1)"),
    ("diffusion", "activation", "sigmoid", "activation must be one of"),
    ("diffusion", "solver", "euler", "solver must be one of ('heun', 'dpmpp_2m')"),
    ("diffusion", "solver", "dpmpp_2m", "solver 'dpmpp_2m' is deterministic: set S_churn=0"),
    ("diffusion", "matmul_precision", "float16", "matmul_precision must be one of ('float32', 'tf32', 'bfloat16')"),
    ("td3_bc", "actor_lr", -3e-4, "--config.td3_bc.actor_lr must be positive"),
    ("td3_bc", "discount", 1.5, "--config.td3_bc.discount must lie in (0, 1]"),
    ("td3_bc", "hidden_dims", (256, 0), "--config.td3_bc.hidden_dims must be positive layer widths"),
    ("td3_bc", "policy_freq", 0, "--config.td3_bc.policy_freq must be positive"),
])
def test_bad_section_values_are_refused(section, field, value, message):
    config = _offline()
    config[section][field] = value
    with pytest.raises(ConfigError) as error:
        d4rl.validate(config)
    assert message in str(error.value)
    if section == "diffusion":
        assert "--config.diffusion." in str(error.value)


@pytest.mark.parametrize("algorithm, field, value", [("edac", "num_critics", 0), ("iql", "expectile", 0.0),
                                                     ("iql", "beta", -1.0), ("edac", "tau", 0.0)])
def test_bad_learner_values_of_the_chosen_algorithm_are_refused(algorithm, field, value):
    config = _offline(algorithm=algorithm)
    config[algorithm][field] = value
    with pytest.raises(ConfigError, match=f"--config.{algorithm}.{field}"):
        d4rl.validate(config)


def test_an_environment_without_level_or_bundled_data_names_the_levels():
    with pytest.raises(ValueError) as error:
        d4rl.get_config("hopper")
    assert "hopper-medium" in str(error.value) and "medium-replay" in str(error.value)
    assert d4rl.get_config("walker2d").dataset == "bundled/walker2d-medium-replay"


def test_per_dataset_settings_follow_the_loaded_dataset_not_the_config_name():
    config = _offline(dataset="hopper-medium-v2", algorithm="edac")
    resolved = d4rl.validate(config)
    assert resolved.edac.num_critics == 50 and resolved.diffusion.width == 2048
    assert config.edac.num_critics is None  # the caller's config is left as it is
    config.algorithm = "iql"
    resolved = d4rl.validate(config)
    assert resolved.iql.tau == 0.001 and resolved.iql.deterministic_actor
    # CORL's defaults on walker2d medium-replay, and a value set on the command line wins.
    walker = d4rl.validate(_offline(algorithm="edac"))
    assert walker.edac.num_critics == 10 and walker.edac.eta == 1.0 and walker.diffusion.width == 1024
    config = _offline(dataset="mujoco/hopper/medium-expert-v0", algorithm="edac")
    config.edac.num_critics = 20
    resolved = d4rl.validate(config)
    assert resolved.edac.num_critics == 20 and resolved.edac.eta == 1.0


def test_a_dataset_of_unknown_task_needs_its_per_dataset_settings_spelled_out():
    with pytest.raises(ConfigError) as error:
        d4rl.validate(_offline(dataset="my_robot.hdf5", algorithm="edac"))
    assert "--config.diffusion.width" in str(error.value)
    config = _offline(dataset="my_robot.hdf5", algorithm="edac")
    config.diffusion.width = 1024
    with pytest.raises(ConfigError) as error:
        d4rl.validate(config)
    assert "--config.edac.eta=1.0" in str(error.value) and "--config.edac.num_critics=10" in str(error.value)
    config.edac.update(eta=1.0, num_critics=10)
    assert d4rl.validate(config).edac.num_critics == 10
    # TD3+BC on real data needs nothing per dataset.
    assert d4rl.validate(_offline(dataset="my_robot.hdf5", data="real")).algorithm == "td3_bc"


def _set(config, path: str, value) -> None:
    """Sets the config field at a dotted path (`synther.diffusion.depth`)."""
    *sections, field = path.split(".")
    for name in sections:
        config = config[name]
    config[field] = value


@pytest.mark.parametrize("path, value, message", [
    ("total_steps", 0, "--config.total_steps must be positive"),
    ("start_steps", 200_000, "--config.start_steps must lie in [0, total_steps"),
    ("agent.num_min_qs", 3, "cannot exceed --config.agent.num_qs"),
    ("agent.utd_ratio", 0, "--config.agent.utd_ratio must be positive"),
    ("agent.policy_q_reduction", "max", "--config.agent.policy_q_reduction='max' is not a choice"),
    ("synther.capacity", 10, "--config.synther.capacity (10) must hold"),
    ("synther.synthetic_ratio", 1.5, "--config.synther.synthetic_ratio must lie in [0, 1]"),
    ("synther.diffusion.depth", 0, "depth must be positive"),
    ("env_name", "Walker3d-v5", "--config.env_name: Unknown environment 'Walker3d-v5'"),
])
def test_bad_online_values_are_refused(path, value, message):
    config = online.get_config("hopper-synther")
    _set(config, path, value)
    with pytest.raises(ConfigError) as error:
        online.validate(config)
    assert message in str(error.value)
    online.validate(online.get_config("hopper-synther"))


@pytest.mark.parametrize("name, path, value, message", [
    ("hopper-pgr", "guidance.condition", "novelty", "--config.guidance.condition='novelty' is not a choice"),
    ("hopper-pgr", "guidance.top_frac", 0.0, "--config.guidance.top_frac must lie in (0, 1]"),
    ("hopper-pgr", "guidance.scale", -1.0, "--config.guidance.scale must be >= 0"),
    ("hopper-pgr", "guidance.icm.hidden", 0, "--config.guidance.icm.hidden must be positive"),
    ("hopper-pgr", "synther.diffusion.conditioning", "none", "set --config.synther.diffusion.conditioning=add"),
    ("hopper-synther", "synther.diffusion.conditioning", "add", "gives it no condition"),
    ("hopper-sac", "guidance.condition", "curiosity", "use an <env>-synther or <env>-pgr config"),
])
def test_bad_guidance_values_are_refused(name, path, value, message):
    config = online.get_config(name)
    _set(config, path, value)
    with pytest.raises(ConfigError) as error:
        online.validate(config)
    assert message in str(error.value)


def test_every_online_environment_has_a_pgr_config_with_pgrs_settings():
    for env in (*online.GYM_ENVS, *online.DMC_ENVS):
        config = online.get_config(f"{env}-pgr")
        online.validate(config)
        assert config.guidance.condition == "curiosity" and config.guidance.scale == 2.0
        assert config.synther.diffusion.conditioning == "add" and config.synther.diffusion.condition_dropout == 0.25
        assert config.synther.retrain_every == 10_000 and config.synther.num_samples == 1_000_000
        assert config.agent.utd_ratio == 20 and config.synther.synthetic_ratio == 0.5
        assert config.guidance.top_frac == (0.1 if env == "quadruped-walk" else 0.25)
    assert online.get_config("hopper-synther").guidance.condition == "none"


@pytest.mark.parametrize("flags, fix", [
    (["--config=configs/d4rl.py:walker2d", "--config.algorithm=foo"], "use one of td3_bc, iql, edac"),
    (["--config=configs/d4rl.py:walker2d", "--config.num_samples=-5"], "--config.num_samples must be positive"),
    (["--config=configs/d4rl.py:hopper"], "configs/d4rl.py:hopper-medium"),
    (["--config=configs/d4rl.py:walker2d", "--config.distill.num_steps=3"], "one of 1, 2, 4"),
])
def test_launch_offline_refuses_bad_input_within_seconds_and_writes_nothing(flags, fix, tmp_path):
    workdir = tmp_path / "run"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "launch.offline", *flags, f"--workdir={workdir}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and fix in result.stderr, result.stderr[-2000:]
    assert time.perf_counter() - start < 20
    assert not workdir.exists()


@pytest.mark.parametrize("terminals", ["modelled", "env_rule", "none"])
def test_each_way_of_making_terminals_is_accepted(terminals):
    assert d4rl.validate(_offline(terminals=terminals)).terminals == terminals
    config = online.get_config("walker2d-synther")
    config.synther.terminals = terminals
    online.validate(config)


@pytest.mark.parametrize("config_arg, dataset, expected", [
    ("walker2d", None, "env_rule"),  # the bundled medium-replay file, named by its task
    ("hopper-medium", None, "env_rule"),
    ("halfcheetah-medium", None, "modelled"),  # a task that never terminates
    ("maze2d-umaze", None, "modelled"),
    ("walker2d", "my_data.npz", "modelled"),  # a file that names no task: the rule is unknown before it loads
])
def test_offline_terminals_default_to_the_tasks_rule_where_it_has_one(config_arg, dataset, expected):
    config = d4rl.get_config(config_arg)
    if dataset is not None:
        config.update(dataset=dataset, env_id=None)
        config.diffusion.width = 256
    assert d4rl.validate(config).terminals == expected
    config.terminals = "none"  # an explicit choice is kept
    assert d4rl.validate(config).terminals == "none"


@pytest.mark.parametrize("overrides, message", [
    ({"distill.num_steps": 3}, "--config.distill.num_steps=3: use 0 (the denoiser's own sampler) or a distilled "
                               "sampler's steps, one of 1, 2, 4."),
    ({"distill.num_steps": 4, "data": "real"}, "which this run does not train (--config.data=real): set "
                                               "--config.distill.num_steps=0."),
    ({"distill.num_steps": 4, "augmentation": "additive"}, "(--config.augmentation=additive)"),
    ({"distill.num_steps": 1, "guidance.condition": "return"}, "cannot distil a guided denoiser yet"),
    ({"distill.num_steps": 2, "distill.ema_decay": 1.0}, "--config.distill....: Invalid DistillConfig: ema_decay"),
])
def test_bad_distillation_settings_are_refused(overrides, message):
    config = d4rl.get_config("walker2d")
    config.update_from_flattened_dict(overrides)
    with pytest.raises(ConfigError) as error:
        d4rl.validate(config)
    assert message in str(error.value)


def test_a_distilled_sampler_is_named_in_the_results():
    from launch.offline import sampler_summary

    config = d4rl.get_config("walker2d")
    assert sampler_summary(d4rl.validate(config))["network_evaluations"] == 255  # 128 Heun steps
    config.distill.num_steps = 4
    assert sampler_summary(d4rl.validate(config)) == {
        "solver": "consistency_distilled", "steps": 4, "network_evaluations": 4,
        "teacher": {"solver": "heun", "steps": 128, "S_churn": 80.0, "network_evaluations": 255}}


@pytest.mark.parametrize("make, prefix", [
    (lambda: _offline(modelled_terminals=False), ""),
    (lambda: online.get_config("hopper-synther"), "synther."),
    (lambda: online.get_config("hopper-sac"), "synther."),  # refused even where no denoiser reads it
])
def test_the_old_terminal_key_is_refused_naming_the_new_one(make, prefix):
    config = make()
    if prefix:
        config.synther.modelled_terminals = True
    with pytest.raises(ConfigError) as error:
        (online if prefix else d4rl).validate(config)
    assert str(error.value) == (f"--config.{prefix}modelled_terminals was replaced by --config.{prefix}terminals: set "
                                "it to modelled (the old true), none (the old false) or env_rule.")


def test_the_old_terminal_key_on_the_command_line_names_the_new_one():
    from launch import boundary

    error = AttributeError(KeyError("'modelled_terminals'"))
    assert boundary._field_error(["launch.online", "--config.synther.modelled_terminals=false"], error) == (
        "--config.synther.modelled_terminals was replaced by --config.synther.terminals: set it to modelled (the old "
        "true), none (the old false) or env_rule.")


@pytest.mark.parametrize("config, message", [
    (_offline(terminals="always"), "--config.terminals='always' is not a choice: use one of modelled, env_rule, none."),
    (_offline(terminals="env_rule", dataset="halfcheetah-medium-v2"),
     "--config.terminals=env_rule labels synthetic terminals by the task's termination rule, and "
     "halfcheetah-medium has none (rules: hopper, walker2d): use --config.terminals=modelled or none."),
    (d4rl.get_config("maze2d-umaze"), "maze2d-umaze has none"),
])
def test_bad_offline_terminals_are_refused(config, message):
    if config.name == "maze2d-umaze":
        config.terminals = "env_rule"
    with pytest.raises(ConfigError) as error:
        d4rl.validate(config)
    assert message in str(error.value)


def test_bad_online_terminals_are_refused():
    config = online.get_config("cheetah-run-synther")
    config.synther.terminals = "env_rule"
    with pytest.raises(ConfigError, match="cheetah-run has none .*: use --config.synther.terminals=modelled or none"):
        online.validate(config)
    config.synther.terminals = "sometimes"
    with pytest.raises(ConfigError, match="--config.synther.terminals='sometimes' is not a choice"):
        online.validate(config)


def test_env_rule_follows_the_environment_of_the_loaded_data():
    """A dataset file names no task, so the rule comes from the environment the loaded data records."""
    import numpy as np

    from pipelines.synthesis import synthetic_terminal_rule
    from synther_jax.data import Transitions
    from synther_jax.termination import RULES

    config = _offline(terminals="env_rule", dataset="my_data.npz")
    data = lambda env_id: Transitions(np.zeros((2, 17)), np.zeros((2, 6)), np.zeros(2), np.zeros((2, 17)),
                                      np.zeros(2), metadata={"env_id": env_id})
    assert synthetic_terminal_rule(config, data("Walker2d-v5")) is RULES["walker2d"]
    with pytest.raises(ConfigError, match="HalfCheetah-v5 has none"):
        synthetic_terminal_rule(config, data("HalfCheetah-v5"))
    config.terminals = "modelled"
    assert synthetic_terminal_rule(config, data("Walker2d-v5")) is None
