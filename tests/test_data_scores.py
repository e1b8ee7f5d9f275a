"""Normalised scores against the reference returns of D4RL's `d4rl/infos.py`."""
import numpy as np
import pytest

from synther_jax.errors import UnknownEnvironmentError
from synther_jax.scores import normalized_score, reference_scores

# (random, expert) returns as printed in D4RL's infos.py.
D4RL_INFOS = {
    "hopper-medium-v2": (-20.272305, 3234.3),
    "halfcheetah-medium-replay-v2": (-280.178953, 12135.0),
    "walker2d-medium-expert-v2": (1.629008, 4592.3),
    "maze2d-umaze-v1": (23.85, 161.86),
    "maze2d-medium-v1": (13.13, 277.39),
    "maze2d-large-v1": (6.7, 273.99),
    "maze2d-umaze-dense-v1": (68.537689, 193.66285642381482),
    "maze2d-medium-dense-v1": (44.264742, 297.4552547777125),
    "maze2d-large-dense-v1": (30.569041, 303.4857382709002),
}


@pytest.mark.parametrize("name", sorted(D4RL_INFOS))
def test_d4rl_names_use_d4rl_reference_returns(name):
    low, high = D4RL_INFOS[name]
    assert normalized_score(name, low) == pytest.approx(0.0, abs=1e-9)
    assert normalized_score(name, high) == pytest.approx(100.0)
    episode_return = 0.3 * high + 17.0
    assert normalized_score(name, episode_return) == pytest.approx(100 * (episode_return - low) / (high - low))


@pytest.mark.parametrize("env_id, d4rl_name", [("Walker2d-v4", "walker2d-medium-expert-v2"),
                                               ("Walker2d-v5", "walker2d-medium-expert-v2"),
                                               ("Hopper-v5", "hopper-medium-v2"),
                                               ("HalfCheetah-v4", "halfcheetah-medium-replay-v2"),
                                               ("mujoco/walker2d/medium-v0", "walker2d-medium-expert-v2"),
                                               ("bundled/walker2d-medium-replay", "walker2d-medium-expert-v2")])
def test_gymnasium_and_minari_ids_map_to_their_family(env_id, d4rl_name):
    returns = np.array([0.0, 1234.5, 3000.0])
    np.testing.assert_allclose(normalized_score(env_id, returns), normalized_score(d4rl_name, returns))


def test_table_says_when_v5_dynamics_differ():
    assert "applied to Walker2d-v5" in reference_scores("Walker2d-v5").table
    assert reference_scores("Walker2d-v4").table == "D4RL v2 table (walker2d-*-v2)"
    assert reference_scores("maze2d-large-dense-v1").table == "D4RL v1 table (maze2d-large-dense-v1)"


def test_minari_reference_scores_take_precedence():
    metadata = {"ref_min_score": -10.0, "ref_max_score": 990.0, "source": "mujoco/walker2d/expert-v0"}
    assert normalized_score("Walker2d-v5", 490.0, metadata) == pytest.approx(50.0)
    assert "Minari" in reference_scores("Walker2d-v5", metadata).table
    # A dataset without both scores falls back on D4RL's table.
    assert normalized_score("Walker2d-v5", 4592.3, {"ref_min_score": 0.0, "ref_max_score": None}) == pytest.approx(100)


@pytest.mark.parametrize("name", ["Ant-v5", "cheetah-run", "antmaze-umaze-v2", "maze2d-open-v0", "walker"])
def test_unknown_environments_are_refused(name):
    with pytest.raises(UnknownEnvironmentError, match="No reference scores"):
        normalized_score(name, 1.0)
