"""Datasets in and out: the transition container, loaders and writers."""
from synther_jax.data.transitions import KEYS, Transitions
