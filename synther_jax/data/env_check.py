"""Does a dataset fit its environment? Dimensions as the learners see the environment."""
import functools
from typing import Tuple

import numpy as np

from synther_jax.data.transitions import Transitions
from synther_jax.errors import InvalidDatasetError, UnknownEnvironmentError


@functools.lru_cache(maxsize=None)
def env_dims(env_id: str) -> Tuple[int, int]:
    """(obs_dim, action_dim) of an environment as the learners see it (`synther_jax.envs.make_env`)."""
    from synther_jax.envs import make_env  # Gymnasium: the `envs` extra, imported only to check a dataset

    try:
        env = make_env(env_id)
    except ValueError as error:
        raise UnknownEnvironmentError(str(error)) from error
    dims = (int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape)))
    env.close()
    return dims


def check_fits_env(transitions: Transitions, env_id: str) -> None:
    """Raises InvalidDatasetError if the transitions' dimensions are not those of `env_id`."""
    obs_dim, action_dim = env_dims(env_id)
    if (transitions.obs_dim, transitions.action_dim) != (obs_dim, action_dim):
        raise InvalidDatasetError(
            f"The dataset has obs_dim={transitions.obs_dim}, action_dim={transitions.action_dim}, but {env_id} has "
            f"obs_dim={obs_dim}, action_dim={action_dim}: the data belongs to another environment.")
