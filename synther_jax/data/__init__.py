"""Datasets in and out: the transition container, loaders and writers.

Data enters through `load_dataset` (Minari, D4RL HDF5, synthetic `.npz`, bundled) and
`launch.collect` (real environments -> Minari); synthetic data leaves through `SyntheticWriter`.
What `load_dataset` raises is in `synther_jax.errors`; D4RL's reference scores in `synther_jax.scores`.
"""
from synther_jax.data.env_check import check_fits_env, env_dims
from synther_jax.data.flatten import Episode, episodes_to_transitions, flat_to_transitions, transitions_to_episodes
from synther_jax.data.loaders import DEFAULT_DATASET, bundled_names, dataset_task, load_dataset
from synther_jax.data.synthetic import SyntheticWriter, read_synthetic, read_synthetic_metadata, write_synthetic
from synther_jax.data.transitions import KEYS, Transitions
