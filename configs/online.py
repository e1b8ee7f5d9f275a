"""Online SynthER and its baselines (paper Section 4.2; the original's config/online/*.gin).

    --config=configs/online.py:walker2d-synther          SAC at UTD 20 on real + synthetic replay
    --config=configs/online.py:quadruped-walk-redq       REDQ: 10 Qs, UTD 20, real data only
    --config=configs/online.py:hopper-sac                SAC at UTD 1 (also trains behaviour policies)
    --config=configs/online.py:cheetah-run-pgr           PGR: SynthER guided towards curious transitions
    --config=configs/online.py:hopper-synther,smoke      every stage shrunk to CPU-minutes
    --config.num_seeds=4                                 seeds as a vmapped axis in one process

Environments: Gymnasium walker2d, halfcheetah, hopper (v5, 100K steps) and DMC cheetah-run,
quadruped-walk, reacher-hard (200K steps); any other `make_env` name works through
`--config.env_name`. `config.agent` holds `agents.sac.init`'s keyword arguments as they are.

`<env>-pgr` is Prioritized Generative Replay (Wang et al., ICLR 2025): SynthER's loop with a
conditional denoiser and classifier-free guidance (`config.guidance`). At each retrain every real
transition is labelled with its relevance (`guidance.condition`: PGR's curiosity, the error of an
ICM trained one Adam step per environment step; or return, td, reward), the denoiser learns
p(transition | relevance) with condition dropout 0.25, and its samples are prompted with
relevances drawn from the real top `top_frac` at guidance scale `scale` (PGR's 2.0). PGR's
settings are the defaults (top_frac 0.25, quadruped-walk 0.1; 1M samples per retrain), the network
is SynthER's plus the condition MLP (`synther.diffusion.conditioning="add"`; PGR's ~4x wider
trunk: `"concat"`). The same-network unconditional control is
`--config.synther.diffusion.condition_dropout=1 --config.guidance.scale=0`; any synther config
becomes guided with `--config.guidance.condition=curiosity --config.synther.diffusion.conditioning=add`.
`validate` checks a config before any work; `launch.online` calls it first.
"""
import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from agents.relevance import RELEVANCES
from configs.checks import (ConfigError, check_choice, check_dataclass, check_distill, check_fraction,
                            check_guidance_prompts, check_positive, require, terminal_rule)
from configs.tracking import validate_wandb, wandb_config
from synther_jax.diffusion import DiffusionConfig, DistillConfig
from synther_jax.envs import make_env

GYM_ENVS = {"walker2d": "Walker2d-v5", "halfcheetah": "HalfCheetah-v5", "hopper": "Hopper-v5"}
DMC_ENVS = ("cheetah-run", "quadruped-walk", "reacher-hard")
VARIANTS = ("sac", "redq", "synther", "pgr")
GUIDED_TOP_FRAC = {"quadruped-walk": 0.1}  # PGR's README commands; 0.25 (its gin file) elsewhere


def agent_config(variant: str) -> ml_collections.ConfigDict:
    """`agents.sac.init` keyword arguments: REDQ's SAC agent at the variant's ensemble size and UTD."""
    num_qs, utd_ratio = {"sac": (2, 1), "redq": (10, 20), "synther": (2, 20), "pgr": (2, 20)}[variant]
    return ml_collections.ConfigDict(dict(
        hidden_dims=(256, 256), learning_rate=3e-4, num_qs=num_qs, num_min_qs=2, utd_ratio=utd_ratio,
        policy_update_delay=20, batch_size=256, discount=0.99, tau=0.005,
        initial_alpha=ml_collections.FieldReference(0.2, field_type=float),  # None: exp(log_alpha) from the start
        target_entropy=placeholder(float),  # None: -action_dim
        policy_q_reduction="mean", policy_uses_updated_critic=False))


def synther_config(enabled: bool, dmc: bool) -> ml_collections.ConfigDict:
    """The diffusion schedule inside the loop (paper Section 3.2) and the online denoiser."""
    diffusion = dataclasses.asdict(DiffusionConfig(width=1024, depth=6, dim_t=256, num_train_steps=100_000,
                                                   batch_size=256))
    return ml_collections.ConfigDict(dict(
        enabled=enabled,
        retrain_every=10_000,  # env steps between retrains
        warm_start=False,  # False: a fresh model at every retrain, as the original; True: continue the last one
        num_samples=1_000_000,  # the README's override of the gin file's 200K
        capacity=1_000_000,  # the synthetic buffer is emptied before each generation
        synthetic_ratio=0.5,  # fraction of every minibatch drawn from the synthetic buffer
        # How synthetic terminals are made: "modelled" (a generated column), "env_rule" (the task's
        # termination rule on each synthetic next state) or "none" (DMC never terminates: no column).
        terminals="none" if dmc else "modelled",
        normalise_reward=not dmc,  # DMC's reward column stays on its raw [0, 1] scale
        terminal_threshold=placeholder(float),  # None: raw generated terminals, as the original's online code
        diffusion=diffusion,
        # Distil each retrained denoiser into a sampler of num_steps evaluations (1, 2 or 4) before it
        # generates; 0: its own 128-step sampler (docs/benchmarks.md).
        distill={**dataclasses.asdict(DistillConfig()), "num_steps": 0}))


def guidance_config(condition: str, env: str) -> ml_collections.ConfigDict:
    """What the generator is conditioned on and how its samples are prompted (PGR's settings)."""
    return ml_collections.ConfigDict(dict(
        condition=condition,  # "none" (SynthER) or a relevance function of agents/relevance.py
        scale=2.0,  # classifier-free guidance w (PGR's cfg_scale): 0 unconditional, 1 conditional
        top_frac=GUIDED_TOP_FRAC.get(env, 0.25),  # prompts drawn from this top fraction of real relevance
        icm=dict(hidden=256, learning_rate=3e-4, batch_size=256)))  # the curiosity model (agents/icm.py)


def get_config(arg: str = "hopper-synther") -> ml_collections.ConfigDict:
    name, *options = arg.split(",")
    env, _, variant = name.rpartition("-")
    if env not in (*GYM_ENVS, *DMC_ENVS) or variant not in VARIANTS or set(options) - {"smoke"}:
        raise ValueError(f"Unknown config {arg!r}: use '<env>-<variant>[,smoke]' with env in "
                         f"{(*GYM_ENVS, *DMC_ENVS)} and variant in {VARIANTS}.")
    dmc = env in DMC_ENVS

    config = ml_collections.ConfigDict()
    config.name = name
    config.env_name = env if dmc else GYM_ENVS[env]
    config.seed = 0
    config.num_seeds = 1  # agents vmapped in one process, each with its own environment copy
    config.total_steps = 200_000 if dmc else 100_000
    config.start_steps = 5_000  # uniform random actions, and no updates, until the buffer holds this many
    config.replay_capacity = 1_000_000
    config.eval_every = 5_000
    config.eval_episodes = 10
    config.log_every = 1_000
    config.checkpoint_every = 10_000
    config.agent = agent_config(variant)
    config.synther = synther_config(variant in ("synther", "pgr"), dmc)
    config.guidance = guidance_config("curiosity" if variant == "pgr" else "none", env)
    if variant == "pgr":
        config.synther.diffusion.conditioning = "add"
    config.wandb = wandb_config()

    if "smoke" in options:
        config.total_steps = 1_200
        config.start_steps = 300
        config.replay_capacity = 5_000
        config.eval_every = 600
        config.eval_episodes = 2
        config.log_every = 200
        config.checkpoint_every = 600
        config.agent.update(hidden_dims=(64, 64), batch_size=64)
        config.synther.update(retrain_every=800, num_samples=5_000, capacity=5_000)
        config.synther.diffusion.update(width=64, depth=2, dim_t=16, num_train_steps=1_000, steps_per_call=500,
                                        checkpoint_every=1_000, sample_chunk_size=5_000, num_sample_steps=16)
        config.guidance.icm.update(hidden=32, batch_size=64)
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the whole config before any work; raises ConfigError with what to change."""
    check_positive(config, "num_seeds", "total_steps", "replay_capacity", "eval_every", "eval_episodes", "log_every",
                   "checkpoint_every")
    require(isinstance(config.start_steps, int) and 0 <= config.start_steps < config.total_steps,
            f"--config.start_steps must lie in [0, total_steps={config.total_steps}), got {config.start_steps!r}.")
    require(isinstance(config.seed, int) and config.seed >= 0, f"--config.seed must be >= 0, got {config.seed!r}.")
    validate_wandb(config)
    agent = config.agent
    check_positive(agent, "learning_rate", "num_qs", "num_min_qs", "utd_ratio", "policy_update_delay", "batch_size",
                   prefix="agent.")
    require(agent.num_min_qs <= agent.num_qs,
            f"--config.agent.num_min_qs ({agent.num_min_qs}) cannot exceed --config.agent.num_qs ({agent.num_qs}).")
    require(len(agent.hidden_dims) > 0 and all(isinstance(d, int) and d > 0 for d in agent.hidden_dims),
            f"--config.agent.hidden_dims must be positive layer widths, got {agent.hidden_dims!r}.")
    check_fraction(agent, "discount", low_open=True, prefix="agent.")
    check_fraction(agent, "tau", low_open=True, prefix="agent.")
    check_choice(agent, "policy_q_reduction", ("mean", "min"), prefix="agent.")
    synther = config.synther
    terminal_rule(synther, config.env_name, prefix="synther.")
    if synther.enabled:
        check_positive(synther, "retrain_every", "num_samples", "capacity", prefix="synther.")
        check_fraction(synther, "synthetic_ratio", low_open=False, prefix="synther.")
        require(synther.capacity >= synther.num_samples,
                f"--config.synther.capacity ({synther.capacity}) must hold the --config.synther.num_samples "
                f"({synther.num_samples}) generated at each retrain.")
        if synther.terminal_threshold is not None:
            check_fraction(synther, "terminal_threshold", low_open=False, prefix="synther.")
        check_dataclass(synther.diffusion, DiffusionConfig, "synther.diffusion.")
    if not synther.enabled:
        refusal = "distils the diffusion model, which this config does not train (use an <env>-synther config)"
    elif config.guidance.condition != "none":
        refusal = f"cannot distil a guided denoiser yet (--config.guidance.condition={config.guidance.condition})"
    else:
        refusal = None
    check_distill(synther.distill, refusal, prefix="synther.")
    validate_guidance(config)
    try:
        make_env(config.env_name).close()
    except ValueError as error:
        raise ConfigError(f"--config.env_name: {error}") from None


def validate_guidance(config: ml_collections.ConfigDict) -> None:
    """A guided run needs the diffusion model on and conditional; an unguided one an unconditional model."""
    guidance, diffusion = config.guidance, config.synther.diffusion
    check_choice(guidance, "condition", ("none", *RELEVANCES), prefix="guidance.")
    if guidance.condition == "none":
        require(not config.synther.enabled or diffusion.conditioning == "none",
                f"--config.synther.diffusion.conditioning={diffusion.conditioning} trains a conditional model, but "
                "--config.guidance.condition=none gives it no condition: set --config.guidance.condition (e.g. "
                "curiosity) or --config.synther.diffusion.conditioning=none.")
        return
    require(config.synther.enabled, f"--config.guidance.condition={guidance.condition} guides the diffusion model, "
            "which this config does not train: use an <env>-synther or <env>-pgr config.")
    require(diffusion.conditioning != "none", f"--config.guidance.condition={guidance.condition} needs a conditional "
            "denoiser: set --config.synther.diffusion.conditioning=add (or concat, PGR's wider network).")
    check_guidance_prompts(guidance)
    if guidance.condition == "curiosity":
        check_positive(guidance.icm, "hidden", "learning_rate", "batch_size", prefix="guidance.icm.")
