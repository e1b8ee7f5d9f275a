"""Small checks that the config files' `validate` functions are made of.

Each raises `ConfigError` with a message that names the field as a command-line override
(`--config.num_samples`) and says what to change, so a launcher can print it and stop before it
writes anything.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Optional

from synther_jax import distributed
from synther_jax.diffusion.config import DISTILLED_STEPS, DistillConfig
from synther_jax.termination import RULES, TERMINALS, HealthRule, rule_for_env

if TYPE_CHECKING:  # only annotations: `pipelines.workdir` imports ConfigError without ml_collections
    import ml_collections


class ConfigError(ValueError):
    """A config value that cannot work; the message says what to change."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_choice(config: ml_collections.ConfigDict, field: str, choices: Iterable[str], prefix: str = "") -> None:
    choices = tuple(choices)
    value = config[field]
    require(value in choices, f"--config.{prefix}{field}={value!r} is not a choice: use one of {', '.join(choices)}.")


def check_positive(config: ml_collections.ConfigDict, *fields: str, prefix: str = "") -> None:
    """Each field is a positive number (a whole one where the field is an int)."""
    for field in fields:
        value = config[field]
        require(isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0,
                f"--config.{prefix}{field} must be positive, got {value!r}.")


def check_fraction(config: ml_collections.ConfigDict, field: str, low_open: bool, prefix: str = "") -> None:
    """The field lies in (0, 1] (`low_open`) or [0, 1]."""
    value = config[field]
    inside = (0 < value <= 1) if low_open else (0 <= value <= 1)
    require(inside, f"--config.{prefix}{field} must lie in {'(0, 1]' if low_open else '[0, 1]'}, got {value!r}.")


def check_guidance_prompts(guidance: ml_collections.ConfigDict) -> None:
    """The prompting of a guided run, offline or online: a guidance scale >= 0 and the top fraction
    of the real rows' condition the prompts are drawn from, in (0, 1]."""
    require(isinstance(guidance.scale, (int, float)) and guidance.scale >= 0,
            f"--config.guidance.scale must be >= 0, got {guidance.scale!r}.")
    check_fraction(guidance, "top_frac", low_open=True, prefix="guidance.")


def default_terminals(config: ml_collections.ConfigDict, env: Optional[str]) -> str:
    """`terminals` as set, or where it is None (the offline default) "env_rule" if `env` has a
    termination rule and "modelled" otherwise: on walker2d the generated column flags about one
    synthetic fall in ten, the rule every one, at no cost to the agents' scores (docs/offline.md)."""
    if config.terminals is not None:
        return config.terminals
    return "env_rule" if rule_for_env(env) is not None else "modelled"


def terminal_rule(config: ml_collections.ConfigDict, env: Optional[str], prefix: str = "") -> Optional[HealthRule]:
    """Checks `terminals` (how synthetic terminals are made) and returns the rule of `env` that labels
    them under "env_rule" (None otherwise, and where `env` is not known yet). The old boolean
    `modelled_terminals` is refused with the key that replaced it."""
    require("modelled_terminals" not in config, f"--config.{prefix}modelled_terminals was replaced by --config."
            f"{prefix}terminals: set it to modelled (the old true), none (the old false) or env_rule.")
    check_choice(config, "terminals", TERMINALS, prefix)
    if config.terminals != "env_rule" or env is None:
        return None
    rule = rule_for_env(env)
    require(rule is not None, f"--config.{prefix}terminals=env_rule labels synthetic terminals by the task's "
            f"termination rule, and {env} has none (rules: {', '.join(RULES)}): use --config.{prefix}terminals="
            "modelled or none.")
    return rule


def check_distill(distill: ml_collections.ConfigDict, refusal: Optional[str], prefix: str = "") -> None:
    """`distill.num_steps` is 0 (off) or a distilled sampler's steps; when on, the section must make a
    `DistillConfig`, the job must be one process (the distillation is not split across processes
    yet), and a run that cannot distil says why in `refusal`."""
    steps = distill.num_steps
    require(steps == 0 or steps in DISTILLED_STEPS, f"--config.{prefix}distill.num_steps={steps!r}: use 0 (the "
            f"denoiser's own sampler) or a distilled sampler's steps, one of {', '.join(map(str, DISTILLED_STEPS))}.")
    if steps == 0:
        return
    require(refusal is None, f"--config.{prefix}distill.num_steps={steps} {refusal}: set --config.{prefix}"
            "distill.num_steps=0.")
    processes = distributed.process_count()  # the launchers validate after joining their job
    require(processes == 1, f"--config.{prefix}distill.num_steps={steps} distils in one process only, and this job "
            f"has {processes}: run it as one process, or set --config.{prefix}distill.num_steps=0.")
    check_dataclass(distill, DistillConfig, f"{prefix}distill.")


def check_dataclass(config: ml_collections.ConfigDict, cls: type, prefix: str, **fixed: Any) -> Any:
    """Builds `cls(**fixed, **config)`, so the dataclass's own checks run; their ValueError becomes a
    ConfigError that names the config section."""
    try:
        return cls(**fixed, **config)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--config.{prefix}...: {error}") from None


def defaults(cls: type) -> dict:
    """The dataclass's fields with a default, by name."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
