"""Explicit data augmentations: the baselines SynthER is compared against (paper Appendix D.1).

Each augmentation draws `num_samples` transitions uniformly with replacement from the real data
(all of them, once each, when `num_samples` is None) and perturbs their states; actions, rewards
and terminals are left as they are, so an augmented dataset can stand in for a synthetic one
anywhere (offline training, the fidelity report).

- additive:       s <- s + eps,  s' <- s' + eps,  eps ~ N(0, 0.1^2 I), one vector per transition;
- multiplicative: s <- eps * s,  s' <- eps * s',  eps ~ U(0.8, 1.2), one number per transition;
- dynamics:       s' <- s + eps * (s' - s),        eps ~ U(0.5, 1.5), one number per transition.

The paper says "N(0, 0.1)"; as in the state-based RAD code (Laskin et al. 2020) 0.1 is the
standard deviation and the same noise vector is added to s and s' (RAD's default also shares the
one multiplicative factor between s and s'). Noise is drawn in the raw (unnormalised) state space.
"""
from typing import Callable, Dict, Optional

import numpy as np

from synther_jax.data.transitions import Transitions


def _resample(data: Transitions, rng: np.random.Generator, num_samples: Optional[int]) -> Transitions:
    """All transitions in order when num_samples is None, else num_samples drawn with replacement."""
    if num_samples is None:
        return data
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}.")
    idx = rng.integers(0, len(data), num_samples)
    optional = {key: None if getattr(data, key) is None else getattr(data, key)[idx]
                for key in ("timeouts", "episode_ids")}
    return Transitions(**{key: value[idx] for key, value in data.as_dict().items()}, **optional,
                       metadata=data.metadata)


def _with_states(data: Transitions, observations: np.ndarray, next_observations: np.ndarray) -> Transitions:
    return Transitions(observations.astype(np.float32), data.actions, data.rewards,
                       next_observations.astype(np.float32), data.terminals, data.timeouts, data.episode_ids,
                       data.metadata)


def additive_noise(data: Transitions, seed: int, num_samples: Optional[int] = None,
                   scale: float = 0.1) -> Transitions:
    """Adds the same Gaussian vector eps ~ N(0, scale^2 I) to s and s' of each transition."""
    rng = np.random.default_rng(seed)
    data = _resample(data, rng, num_samples)
    eps = rng.standard_normal(data.observations.shape, dtype=np.float32) * np.float32(scale)
    return _with_states(data, data.observations + eps, data.next_observations + eps)


def multiplicative_noise(data: Transitions, seed: int, num_samples: Optional[int] = None,
                         low: float = 0.8, high: float = 1.2) -> Transitions:
    """Multiplies s and s' of each transition by one number eps ~ U(low, high)."""
    rng = np.random.default_rng(seed)
    data = _resample(data, rng, num_samples)
    eps = rng.uniform(low, high, (len(data), 1)).astype(np.float32)
    return _with_states(data, data.observations * eps, data.next_observations * eps)


def dynamics_noise(data: Transitions, seed: int, num_samples: Optional[int] = None,
                   low: float = 0.5, high: float = 1.5) -> Transitions:
    """Scales the state change: s' <- s + eps * (s' - s) with one eps ~ U(low, high) per transition."""
    rng = np.random.default_rng(seed)
    data = _resample(data, rng, num_samples)
    eps = rng.uniform(low, high, (len(data), 1)).astype(np.float32)
    next_observations = data.observations + eps * (data.next_observations - data.observations)
    return _with_states(data, data.observations, next_observations)


AUGMENTATIONS: Dict[str, Callable[..., Transitions]] = {
    "additive": additive_noise,
    "multiplicative": multiplicative_noise,
    "dynamics": dynamics_noise,
}


def augment(data: Transitions, kind: str, seed: int, num_samples: Optional[int] = None) -> Transitions:
    """The augmentation named `kind` (one of AUGMENTATIONS) with the paper's parameters."""
    if kind not in AUGMENTATIONS:
        raise ValueError(f"Unknown augmentation {kind!r}: choose one of {sorted(AUGMENTATIONS)}.")
    return AUGMENTATIONS[kind](data, seed, num_samples)
