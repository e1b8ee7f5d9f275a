"""What classifier-free guidance needs besides the network: the condition's scale and the prompts.

A conditional model learns p(x | c) for one scalar c per transition (a relevance score in PGR, a
return-to-go in GTA). The condition enters the network min-max normalised to [-1, 1], as PGR's,
with the range fitted on the rows that hold a value (PGR fits it over its whole zero-padded label
buffer, so its minimum is always 0; a `valid` mask avoids that). Sampling is prompted with targets
drawn uniformly from the top `top_frac` of the real rows' conditions: real, in-distribution tail
values, nothing extrapolated.
"""
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

RANGE_EPS = 1e-5  # PGR's guard against a constant condition


class ConditionNormalizer(flax.struct.PyTreeNode):
    """c -> 2 (c - low) / (high - low + eps) - 1, fitted on the filled rows."""

    low: jnp.ndarray
    high: jnp.ndarray

    @classmethod
    def fit(cls, values, valid: Optional[np.ndarray] = None) -> "ConditionNormalizer":
        """The range of `values` (N,), over the rows where `valid` (N,) is true (all by default)."""
        values = np.asarray(values, np.float64).reshape(-1)
        if valid is not None:
            values = values[np.asarray(valid, bool).reshape(-1)]
        if len(values) == 0 or not np.all(np.isfinite(values)):
            raise ValueError(f"The condition needs finite values for at least one row; got {len(values)} rows"
                             f"{' with NaN or inf values' if len(values) else ''}.")
        return cls(jnp.float32(values.min()), jnp.float32(values.max()))

    def normalize(self, c):
        return 2.0 * (c - self.low) / (self.high - self.low + RANGE_EPS) - 1.0

    def unnormalize(self, c):
        return (c + 1.0) / 2.0 * (self.high - self.low + RANGE_EPS) + self.low


def top_fraction_prompts(key: jax.Array, conditions, num: int, top_frac: float,
                         valid: Optional[jax.Array] = None) -> jax.Array:
    """`num` targets drawn uniformly with replacement from the ceil(top_frac n) highest of the n
    valid `conditions` (PGR's prompting); ties at the cut are broken by position."""
    if not 0.0 < top_frac <= 1.0:
        raise ValueError(f"top_frac must lie in (0, 1], got {top_frac!r}.")
    conditions = jnp.asarray(conditions, jnp.float32)
    valid = jnp.ones(conditions.shape, bool) if valid is None else jnp.asarray(valid, bool)
    count = jnp.sum(valid)
    top = jnp.maximum(1, jnp.ceil(top_frac * count).astype(jnp.int32))
    order = jnp.argsort(jnp.where(valid, -conditions, jnp.inf), stable=True)  # valid rows, highest first
    return conditions[order[jax.random.randint(key, (num,), 0, top)]]

