"""Per-dimension standardisation of transition rows (the original's 'standard' normaliser).

mean and unbiased std (ddof = 1) + 1e-5 over the real data; dimensions listed in `skip_dims`
(the terminal column, and the reward for the online DMC setting) keep mean 0 and std 1, i.e. stay
raw. Deviation from the original: a non-skipped dimension that is constant in the data would get
std 1e-5 and amplify the model's small errors by 1e5; we warn and leave it at std 1 instead.
"""
import warnings
from typing import Sequence

import flax.struct
import jax.numpy as jnp
import numpy as np

from synther_jax.errors import InvalidDatasetError

STD_EPS = 1e-5


class Normalizer(flax.struct.PyTreeNode):
    mean: jnp.ndarray
    std: jnp.ndarray

    @classmethod
    def fit(cls, rows: np.ndarray, skip_dims: Sequence[int] = ()) -> "Normalizer":
        rows = np.asarray(rows, np.float64)
        if rows.ndim != 2 or len(rows) < 2:
            raise InvalidDatasetError(f"The diffusion model needs at least 2 transitions as rows of numbers (an (N, d) "
                                      f"array with N >= 2); got rows of shape {rows.shape}.")
        mean = rows.mean(axis=0)
        raw_std = rows.std(axis=0, ddof=1)
        std = raw_std + STD_EPS
        constant = np.flatnonzero(raw_std == 0.0)
        constant = [d for d in constant if d not in set(skip_dims)]
        if constant:
            warnings.warn(f"Dimensions {constant} are constant in the data; they are centred but not scaled "
                          "(std set to 1) so the model cannot blow them up. Consider dropping them.")
            std[constant] = 1.0
        skip = list(skip_dims)
        mean[skip], std[skip] = 0.0, 1.0
        return cls(jnp.asarray(mean, jnp.float32), jnp.asarray(std, jnp.float32))

    def normalize(self, x):
        return (x - self.mean) / self.std

    def unnormalize(self, x):
        return x * self.std + self.mean
