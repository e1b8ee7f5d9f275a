"""`SynthER`, the public API: every form of input gives the same model, samples keep the layout,
save/load round-trips exactly, bad input is refused with what to pass."""
import dataclasses
import json
import re

import jax
import numpy as np
import pytest

from synther_jax import SynthER
from synther_jax.data import Transitions
from synther_jax.diffusion import DiffusionConfig, load_diffusion
from synther_jax.errors import DamagedFileError, WorkdirError
from synther_jax.termination import RULES
from tests.test_offline import truncate_newest_checkpoint

CONFIG = DiffusionConfig(width=32, depth=1, dim_t=16, num_train_steps=40, steps_per_call=20, num_sample_steps=4,
                         sample_chunk_size=64)
OBS_DIM, ACTION_DIM = 3, 2


@pytest.fixture(scope="module")
def transitions():
    rng = np.random.default_rng(0)
    n = 300
    return Transitions(rng.normal(size=(n, OBS_DIM)), rng.uniform(-1, 1, (n, ACTION_DIM)), rng.normal(size=n),
                       rng.normal(size=(n, OBS_DIM)), (rng.uniform(size=n) < 0.2).astype(np.float32))


def test_transitions_mapping_and_rows_give_the_same_model(transitions):
    fits = [SynthER.fit(transitions, CONFIG, seed=3, progress=False),
            SynthER.fit(transitions.as_dict(), CONFIG, seed=3, progress=False),
            SynthER.fit(transitions.to_rows(), CONFIG, seed=3, obs_dim=OBS_DIM, action_dim=ACTION_DIM, progress=False)]
    for other in fits[1:]:
        jax.tree.map(np.testing.assert_array_equal, fits[0].model.params, other.model.params)
    samples = fits[0].sample(jax.random.PRNGKey(1), 100)
    assert samples.observations.shape == (100, OBS_DIM) and samples.actions.shape == (100, ACTION_DIM)
    assert set(np.unique(samples.terminals)) <= {0.0, 1.0}  # thresholded at 0.5, as the original
    np.testing.assert_array_equal(fits[0].sample(jax.random.PRNGKey(1), 100).rewards, samples.rewards)


def test_save_and_load_round_trip_and_overwrite(transitions, tmp_path):
    synther = SynthER.fit(transitions, CONFIG, seed=0, terminals="none", progress=False)
    synther.save(str(tmp_path / "model"))
    other = SynthER.fit(transitions, CONFIG, seed=1, terminals="none", progress=False)
    other.save(str(tmp_path / "model"))  # replaces the first
    loaded = SynthER.load(str(tmp_path / "model"))
    assert (loaded.obs_dim, loaded.action_dim, loaded.terminals) == (OBS_DIM, ACTION_DIM, "none")
    key = jax.random.PRNGKey(2)
    np.testing.assert_array_equal(loaded.sample(key, 50).observations, other.sample(key, 50).observations)
    assert not np.any(loaded.sample(key, 50).terminals)  # no terminal column: never terminal

    # A model saved before `terminals` recorded the boolean `modelled_terminals`; it still loads.
    layout_file = tmp_path / "model" / "synther.json"
    layout = json.loads(layout_file.read_text())
    for old_value, terminals in ((False, "none"), (True, "modelled")):
        old = {key: value for key, value in layout.items() if key not in ("terminals", "terminal_rule")}
        layout_file.write_text(json.dumps({**old, "modelled_terminals": old_value}))
        assert SynthER.load(str(tmp_path / "model")).terminals == terminals


def test_env_rule_by_name_labels_samples_by_the_rule_and_saves_its_name(tmp_path):
    rng = np.random.default_rng(0)
    n, obs_dim = 300, RULES["hopper"].obs_dim
    next_observations = np.concatenate([rng.uniform(0.5, 1.5, (n, 1)), rng.normal(0, 0.15, (n, obs_dim - 1))], 1)
    hopper = Transitions(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, 3)), rng.normal(size=n),
                         next_observations, np.zeros(n))  # the rule, not these flags, labels the samples
    synther = SynthER.fit(hopper, CONFIG, terminals="env_rule", terminal_rule="hopper", progress=False)
    assert synther.model.dim == 2 * obs_dim + 3 + 1  # the denoiser models no terminal column
    samples = synther.sample(jax.random.PRNGKey(1), 200)
    np.testing.assert_array_equal(samples.terminals, RULES["hopper"](samples.next_observations))
    assert 0 < samples.terminals.sum() < 200  # both sides of the rule
    synther.save(str(tmp_path / "model"))
    loaded = SynthER.load(str(tmp_path / "model"))  # a named rule is saved: nothing to pass again
    assert loaded.terminals == "env_rule" and loaded.terminal_rule is RULES["hopper"]
    np.testing.assert_array_equal(loaded.sample(jax.random.PRNGKey(1), 200).terminals, samples.terminals)


def test_env_rule_by_function_is_asked_for_again_on_load(transitions, tmp_path):
    def rule(next_observations):
        return next_observations[:, 0] > 0.5

    synther = SynthER.fit(transitions, CONFIG, terminals="env_rule", terminal_rule=rule, progress=False)
    key = jax.random.PRNGKey(2)
    samples = synther.sample(key, 100)
    np.testing.assert_array_equal(samples.terminals, rule(samples.next_observations))
    synther.save(str(tmp_path / "model"))
    with pytest.raises(ValueError) as error:
        SynthER.load(str(tmp_path / "model"))
    assert "SynthER.load(directory, terminal_rule=function)" in str(error.value) and "\n" not in str(error.value)
    loaded = SynthER.load(str(tmp_path / "model"), terminal_rule=rule)
    np.testing.assert_array_equal(loaded.sample(key, 100).terminals, samples.terminals)


def test_terminal_arguments_are_checked_before_training(transitions, tmp_path):
    with pytest.raises(TypeError, match="modelled_terminals was replaced by terminals: pass terminals='modelled'"):
        SynthER.fit(transitions, CONFIG, modelled_terminals=False)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['seeds'\]"):
        SynthER.fit(transitions, CONFIG, seeds=2)
    with pytest.raises(ValueError, match="terminals='always': use one of 'modelled', 'env_rule', 'none'"):
        SynthER.fit(transitions, CONFIG, terminals="always")
    with pytest.raises(ValueError, match="goes with terminals='env_rule', and only there"):
        SynthER.fit(transitions, CONFIG, terminals="env_rule")
    with pytest.raises(ValueError, match="goes with terminals='env_rule', and only there"):
        SynthER.fit(transitions, CONFIG, terminal_rule="hopper")
    with pytest.raises(ValueError, match="No termination rule named 'ant'"):
        SynthER.fit(transitions, CONFIG, terminals="env_rule", terminal_rule="ant")
    SynthER.fit(transitions, CONFIG, progress=False).save(str(tmp_path / "model"))
    with pytest.raises(ValueError, match="makes terminals 'modelled', not by a rule: load it without terminal_rule"):
        SynthER.load(str(tmp_path / "model"), terminal_rule="hopper")


def test_bad_input_is_refused_with_what_to_pass(transitions, tmp_path):
    partial = {key: value for key, value in transitions.as_dict().items() if key != "rewards"}
    with pytest.raises(ValueError, match=r"lacks \['rewards'\]"):
        SynthER.fit(partial, CONFIG)
    with pytest.raises(ValueError, match="obs_dim and action_dim"):
        SynthER.fit(transitions.to_rows(), CONFIG)
    with pytest.raises(ValueError, match="NaN"):
        SynthER.fit({**transitions.as_dict(), "rewards": np.full(len(transitions), np.nan)}, CONFIG)
    with pytest.raises(FileNotFoundError, match="SynthER.save"):
        SynthER.load(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="positive number of samples"):
        SynthER.fit(transitions, CONFIG, progress=False).sample(jax.random.PRNGKey(0), 0)


def test_distilled_model_samples_in_its_steps_and_round_trips(transitions, tmp_path, monkeypatch):
    from synther_jax.diffusion import DistillConfig, sampling

    synther = SynthER.fit(transitions, CONFIG, seed=0, terminals="none", progress=False)
    settings = DistillConfig(num_train_steps=20, steps_per_call=10, checkpoint_every=10)
    fast = synther.distill(transitions, num_steps=2, config=settings, workdir=str(tmp_path / "distill"), progress=False)
    assert fast.model.distilled.num_steps == 2 and synther.model.distilled is None  # the teacher is left as it was
    real_denoiser_fn, calls = sampling.denoiser_fn, []

    def counting_denoiser_fn(*args, **kwargs):
        net = real_denoiser_fn(*args, **kwargs)

        def counted(x, *rest):
            jax.debug.callback(lambda: calls.append(1))
            return net(x, *rest)
        return counted

    monkeypatch.setattr(sampling, "denoiser_fn", counting_denoiser_fn)
    samples = fast.sample(jax.random.PRNGKey(1), 50)
    assert len(calls) == 2  # one evaluation per distilled step (one chunk), where the teacher makes 7
    assert samples.observations.shape == (50, OBS_DIM)
    fast.save(str(tmp_path / "model"))
    loaded = SynthER.load(str(tmp_path / "model"))
    assert loaded.model.distilled == fast.model.distilled
    np.testing.assert_array_equal(loaded.sample(jax.random.PRNGKey(1), 50).observations, samples.observations)
    resumed = synther.distill(transitions, num_steps=2, config=settings, workdir=str(tmp_path / "distill"),
                              progress=False)  # finished: read back from its checkpoint
    jax.tree.map(np.testing.assert_array_equal, resumed.model.params, fast.model.params)

    with pytest.raises(ValueError, match="num_steps must be one of"):
        synther.distill(transitions, num_steps=3, config=settings)
    with pytest.raises(ValueError, match="distil on the data the model was fitted to"):
        wider = Transitions(np.c_[transitions.observations, transitions.rewards], transitions.actions,
                            transitions.rewards, np.c_[transitions.next_observations, transitions.rewards],
                            transitions.terminals)
        synther.distill(wider, num_steps=2, config=settings)
    with pytest.raises(ValueError, match="distilled already"):
        fast.distill(transitions, num_steps=1, config=settings, progress=False)


def test_guided_fit_sample_save_load_and_resume(transitions, tmp_path):
    relevance = transitions.rewards
    synther = SynthER.fit(transitions, CONFIG, seed=0, condition=relevance, workdir=str(tmp_path / "train"),
                          progress=False)
    assert synther.model.config.conditioning == "add"  # an unconditional config gets the default conditioning
    key = jax.random.PRNGKey(3)
    one_target = synther.sample(key, 50, condition=1.5, guidance=2.0)
    np.testing.assert_array_equal(one_target.rewards, synther.sample(key, 50, condition=np.full(50, 1.5),
                                                                     guidance=2.0).rewards)
    assert not np.allclose(one_target.rewards, synther.sample(key, 50).rewards)  # None: unconditional
    resumed = SynthER.fit(transitions, CONFIG, seed=0, condition=relevance, workdir=str(tmp_path / "train"),
                          progress=False)  # a finished run in its workdir just loads
    jax.tree.map(np.testing.assert_array_equal, resumed.model.params, synther.model.params)
    synther.save(str(tmp_path / "model"))
    loaded = SynthER.load(str(tmp_path / "model"))
    assert float(loaded.model.condition_normalizer.high) == pytest.approx(float(relevance.max()))
    np.testing.assert_array_equal(loaded.sample(key, 50, condition=1.5, guidance=2.0).rewards, one_target.rewards)
    with pytest.raises(ValueError, match="unconditional"):
        SynthER.fit(transitions, CONFIG, progress=False).sample(key, 10, condition=1.0)


@pytest.mark.slow
def test_the_guided_docs_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """docs/guided.md's example, as written: guidance towards the top 10% rewards raises the reward."""
    import os
    import re
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "guided.md")) as file:
        example = re.search(r"```python\n(.*?)```", file.read(), re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/guided.md", "exec"), {})
    real, unguided, guided = map(float, re.findall(r"-?\d+\.\d+", capsys.readouterr().out))
    assert guided > unguided + 0.1 and guided > real
    assert (tmp_path / "hopper_guided" / "synther.json").exists()


def test_a_used_workdir_resumes_only_the_same_fit_and_stays_loadable(transitions, tmp_path):
    workdir = str(tmp_path / "fit")
    first = SynthER.fit(transitions, CONFIG, seed=0, workdir=workdir, progress=False)
    saved = {name: (tmp_path / "fit" / name).read_bytes() for name in ("fit.json", "diffusion_config.json")}
    other_rows = {**transitions.as_dict(), "rewards": transitions.rewards + 1.0}
    wider = dataclasses.replace(CONFIG, width=64)
    for data, config, seed, differing in ((other_rows, CONFIG, 0, "rows"), (transitions, wider, 0, "config (width)"),
                                          (transitions, CONFIG, 1, "key")):
        with pytest.raises(WorkdirError, match=re.escape(f"differing: {differing}")):
            SynthER.fit(data, config, seed=seed, workdir=workdir, progress=False)
    for name, content in saved.items():
        assert (tmp_path / "fit" / name).read_bytes() == content, name  # nothing in the workdir touched
    jax.tree.map(np.testing.assert_array_equal, load_diffusion(workdir).params, first.model.params)
    again = SynthER.fit(transitions, CONFIG, seed=0, workdir=workdir, progress=False)  # the same fit: loads
    jax.tree.map(np.testing.assert_array_equal, again.model.params, first.model.params)


def test_load_names_the_damaged_file(transitions, tmp_path):
    SynthER.fit(transitions, CONFIG, progress=False).save(str(tmp_path / "model"))
    layout = tmp_path / "model" / "synther.json"
    content = layout.read_text()
    layout.write_text(content[: len(content) // 2])
    with pytest.raises(DamagedFileError, match=re.escape(str(layout))):
        SynthER.load(str(tmp_path / "model"))
    layout.write_text(content)
    truncate_newest_checkpoint(tmp_path / "model" / "model")
    with pytest.raises(DamagedFileError, match=re.escape(str(tmp_path / "model" / "model"))):
        SynthER.load(str(tmp_path / "model"))
