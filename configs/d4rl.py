"""Offline SynthER on D4RL-style locomotion datasets.

    --config=configs/d4rl.py:walker2d                   the bundled walker2d medium-replay data
    --config=configs/d4rl.py:hopper-medium              D4RL's hopper-medium-v2 file from the local cache
    --config=configs/d4rl.py:walker2d,smoke             every stage shrunk to CPU-minutes
    --config=configs/d4rl.py:walker2d,large             TD3+BC with 3x512 networks and batch 1024 (Table 3)
    --config=configs/d4rl.py:maze2d-umaze               maze2d (also -medium, -large) on PointMaze, data made
                                                        D4RL's way on first use (synther_jax.data.maze2d_datasets)
    --config.dataset=mujoco/walker2d/medium-v0          any dataset id or path `load_dataset` accepts
    --config.algorithm=iql --config.iql.beta=10         the learner and any of its hyperparameters
    --config.guidance.condition=return                  guided SynthER: samples steered towards high return-to-go

Defaults are the paper's: denoiser width 1024 (2048 for halfcheetah medium-expert and hopper medium
and medium-expert, Appendix B.1), 100K training steps, 5M synthetic transitions that replace the
real data, 4 seeds, CORL's hyperparameters with its per-dataset overrides, evaluation every 5000
updates on 10 episodes.

The per-dataset values (denoiser width, CORL's overrides) are left unset here and filled in by
`validate` from the dataset actually loaded (`synther_jax.data.dataset_task`), so that
`--config.dataset=hopper-medium-v2` gets hopper's settings whatever the config is called; a value
set on the command line is kept. Every launcher that takes this config calls `validate` first.

Guidance (`config.guidance`, docs/guided.md): with `condition` "return" (each transition's
discounted return-to-go within its episode, as GTA conditions on) or "reward", the denoiser learns
p(transition | condition) with classifier-free condition dropout, and every sample is prompted with
a condition drawn from the real rows' top `top_frac`, at guidance scale `scale`. `validate` makes
the denoiser conditional (`diffusion.conditioning="add"`) unless one is named.
"""
import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from agents import OFFLINE_LEARNERS, td3_bc
from configs.checks import (ConfigError, check_choice, check_dataclass, check_fraction, check_guidance_prompts,
                            check_distill, check_positive, default_terminals, defaults, require,
                            terminal_rule)
from configs.tracking import validate_wandb, wandb_config
from synther_jax.augment import AUGMENTATIONS
from synther_jax.data import bundled_names, dataset_task, maze2d_datasets
from synther_jax.diffusion import DiffusionConfig, DistillConfig

ENVS = ("walker2d", "hopper", "halfcheetah")
LEVELS = ("random", "medium", "medium-replay", "medium-expert")
WIDE_DENOISER = {"halfcheetah-medium-expert", "hopper-medium", "hopper-medium-expert"}
DEFAULT_WIDTH, WIDE_WIDTH = 1024, 2048
# D4RL-v2 data is evaluated on the -v4 environments, whose dynamics match it (v5 changed Walker2d).
D4RL_EVAL_ENVS = {"walker2d": "Walker2d-v4", "hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4"}
DATA_CHOICES = ("synthetic", "real", "mixed")
CONDITIONS = ("none", "return", "reward")  # what offline guidance conditions the denoiser on
# Learner fields that must be positive, or lie in (0, 1], wherever a learner has them.
POSITIVE_FIELDS = ("actor_lr", "critic_lr", "value_lr", "alpha_lr", "num_critics", "policy_freq", "max_action", "beta")
FRACTION_FIELDS = ("discount", "tau", "expectile")


def bundled_dataset(env: str):
    """The bundled dataset of `env`'s data (`bundled/<env>-<level>`), or None."""
    return next((name for name in bundled_names() if dataset_task(name).startswith(f"{env}-")), None)


def per_dataset_fields(module) -> set:
    """The learner's hyperparameters that CORL sets per dataset (any key of its override table)."""
    return {field for overrides in module.DATASET_OVERRIDES.values() for field in overrides}
# maze2d tasks: evaluated on `synther_jax.envs.maze2d`'s environment of the same name, trained on our
# D4RL-style data (`synther/maze2d/<layout>-v0`, made by launch.offline when absent; `,smoke`: 50K steps).
MAZES = ("maze2d-umaze", "maze2d-medium", "maze2d-large")
# CORL's maze2d yaml files evaluate TD3+BC and IQL on 100 episodes (EDAC on 10; 100 here too: the
# 300-800-step episodes are cheap and more episodes only lower the variance).
MAZE_EVAL_EPISODES = 100


def get_config(arg: str = "walker2d") -> ml_collections.ConfigDict:
    name, *options = arg.split(",")
    unknown = set(options) - {"smoke", "large"}
    env, _, level = name.partition("-")
    if (name not in MAZES and (env not in ENVS or (level and level not in LEVELS))) or unknown:
        raise ValueError(f"Unknown config {arg!r}: use '<env>[-<level>][,smoke][,large]' with env in {ENVS} and "
                         f"level in {LEVELS}, or one of {MAZES}; options: smoke, large.")
    bundled = bundled_dataset(env)
    if name not in MAZES and not level and bundled is None:
        raise ValueError(f"configs/d4rl.py:{arg} names no level, and no dataset of {env} is bundled (bundled: "
                         f"{', '.join(bundled_names())}): name one, e.g. configs/d4rl.py:{env}-medium for D4RL's "
                         f"{env}-medium-v2 file, with a level in {LEVELS}.")

    config = ml_collections.ConfigDict()
    config.name = name
    config.seed = 0
    # The data: a dataset id or path (see synther_jax.data.load_dataset) and the env to evaluate on
    # (None: the one the dataset names).
    config.dataset = f"{env}-{level}-v2" if level else bundled
    config.env_id = placeholder(str)
    if name in MAZES:
        config.dataset = maze2d_datasets.default_dataset_id(name, maze2d_datasets.SMOKE_NUM_STEPS if "smoke" in options
                                                        else None)
        config.env_id = name
    elif level:
        config.env_id = D4RL_EVAL_ENVS[env]
    # How synthetic terminals are made: "modelled" (a generated column, thresholded at terminal_threshold:
    # the paper's), "env_rule" (the task's termination rule on each synthetic next state) or "none" (all 0).
    # None: env_rule where the task has a rule (hopper, walker2d), modelled elsewhere and where the task
    # is not known before the data loads (docs/offline.md measured it; docs/deviations.md).
    config.terminals = placeholder(str)
    config.terminal_threshold = 0.5
    # Clip each generated action to the environments' unit action box. The original does not: about
    # one synthetic action entry in ten lies beyond it on walker2d (docs/deviations.md).
    config.clip_actions = False
    config.num_samples = 5_000_000

    config.diffusion = ml_collections.ConfigDict(dataclasses.asdict(DiffusionConfig()))
    config.diffusion.width = placeholder(int)  # None: the paper's width for the loaded dataset (see validate)
    # Distil the trained denoiser into a sampler of num_steps network evaluations (1, 2 or 4) and draw
    # the samples with it; 0 (the default): the denoiser's own sampler (docs/benchmarks.md measures both).
    config.distill = ml_collections.ConfigDict({**dataclasses.asdict(DistillConfig()), "num_steps": 0})

    # What the agent trains on: "synthetic" (replaces the real data, as the paper), "real" or "mixed"
    # (both pooled). `augmentation` replaces the diffusion model by an explicit augmentation of the
    # real data (additive, multiplicative or dynamics noise; Appendix D.1) as a baseline, and
    # `real_fraction` subsamples the real data before anything else (Figure 4).
    config.data = "synthetic"
    config.augmentation = "none"
    config.real_fraction = 1.0
    config.analyze = True  # fidelity / physical-validity report after generation

    config.algorithm = "td3_bc"
    config.num_seeds = 4
    # One denoiser for all agent seeds (False, the default: the original's scripts train one model
    # with `train_diffuser.py --seed` and point every agent seed's run at its samples file; the paper
    # does not say whether its seeds shared one), or one per agent seed (True: denoiser seed
    # `seed + i` for agent seed i, all trained and sampled as one vmapped program), so that the
    # spread over seeds covers the generative model too.
    config.denoiser_per_seed = False
    config.agent_steps = placeholder(int)  # None: 1M (TD3+BC, IQL), 3M (EDAC)
    config.batch_size = 256
    config.eval_every = 5_000
    config.eval_episodes = MAZE_EVAL_EPISODES if name in MAZES else 10
    for algorithm, (module, config_cls) in OFFLINE_LEARNERS.items():
        # Set by the pipeline: the action dim from the data, IQL's actor LR decay length from agent_steps.
        fields = {k: v for k, v in defaults(config_cls).items() if k != "max_steps"}
        section = ml_collections.ConfigDict(fields)
        for field in per_dataset_fields(module):  # None: CORL's value for the loaded dataset (see validate)
            section[field] = placeholder(type(fields[field]))
        config[algorithm] = section

    config.guidance = ml_collections.ConfigDict(dict(
        condition="none",  # "return": return-to-go within the episode (GTA); "reward"; "none": SynthER
        scale=2.0,  # classifier-free guidance w: 0 unconditional, 1 conditional, > 1 further (PGR's 2.0)
        top_frac=0.1,  # prompts drawn from this top fraction of the real rows' condition
        discount=0.99))  # of the return-to-go (GTA's)

    config.wandb = wandb_config()

    if "large" in options:
        config.td3_bc.hidden_dims = td3_bc.LARGE_HIDDEN_DIMS
        config.batch_size = td3_bc.LARGE_BATCH_SIZE
    if "smoke" in options:
        config.num_samples = 20_000
        config.diffusion.update(width=256, depth=3, dim_t=64, num_train_steps=15_000, steps_per_call=1_000,
                                checkpoint_every=5_000, sample_chunk_size=10_000)
        config.num_seeds = 2
        config.agent_steps = 4_000
        config.eval_every = 2_000
        config.eval_episodes = 2
        config.edac.num_critics = 4
    return config


def validate(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Checks the whole config before any work and returns a copy with its per-dataset values filled
    in from the dataset it names. Raises ConfigError with what to change; reads no data beyond a
    synthetic file's metadata."""
    config = ml_collections.ConfigDict(config.to_dict())  # a copy; the caller's config is left as it is
    require(isinstance(config.dataset, str) and config.dataset != "", "--config.dataset must name a dataset id or file.")
    check_choice(config, "algorithm", OFFLINE_LEARNERS)
    check_choice(config, "data", DATA_CHOICES)
    check_choice(config, "augmentation", ("none", *AUGMENTATIONS))
    require(config.augmentation == "none" or config.data != "real",
            f"--config.augmentation={config.augmentation} replaces the diffusion model, but --config.data=real trains "
            "on the real data alone: use --config.data=synthetic or mixed, or --config.augmentation=none.")
    check_positive(config, "num_seeds", "batch_size", "eval_every", "eval_episodes", "num_samples")
    require(isinstance(config.clip_actions, bool), f"--config.clip_actions must be true or false, got "
            f"{config.clip_actions!r}.")
    require(isinstance(config.denoiser_per_seed, bool),
            f"--config.denoiser_per_seed must be true or false, got {config.denoiser_per_seed!r}.")
    require(not config.denoiser_per_seed or (config.data != "real" and config.augmentation == "none"),
            "--config.denoiser_per_seed trains one denoiser per agent seed, but "
            + ("--config.data=real trains none" if config.data == "real" else
               f"--config.augmentation={config.augmentation} replaces the denoiser")
            + ": leave --config.denoiser_per_seed=false for this run.")
    if config.agent_steps is not None:
        check_positive(config, "agent_steps")
    require(isinstance(config.seed, int) and config.seed >= 0, f"--config.seed must be >= 0, got {config.seed!r}.")
    check_fraction(config, "real_fraction", low_open=True)
    check_fraction(config, "terminal_threshold", low_open=False)
    env = config.env_id or dataset_task(config.dataset)
    config.terminals = default_terminals(config, env)
    terminal_rule(config, env)
    validate_wandb(config)

    task = dataset_task(config.dataset)
    unknown = (f"The dataset {config.dataset!r} names no D4RL task (<env>-<level> or maze2d-<maze>), so its "
               "per-dataset settings are unknown: ")
    trains_denoiser = config.data != "real" and config.augmentation == "none"
    if config.diffusion.width is None:
        require(task is not None or not trains_denoiser,
                unknown + f"set --config.diffusion.width (the paper's {DEFAULT_WIDTH}; {WIDE_WIDTH} for "
                f"{', '.join(sorted(WIDE_DENOISER))}).")
        config.diffusion.width = WIDE_WIDTH if task in WIDE_DENOISER else DEFAULT_WIDTH
    validate_guidance(config, trains_denoiser)
    check_dataclass(config.diffusion, DiffusionConfig, "diffusion.")
    validate_distill(config, trains_denoiser)

    module, config_cls = OFFLINE_LEARNERS[config.algorithm]
    section, prefix = config[config.algorithm], f"{config.algorithm}."
    unset = sorted(field for field, value in section.items() if value is None)
    if unset and task is None:
        default_values = defaults(config_cls)
        raise ConfigError(unknown + "set " + " ".join(f"--config.{prefix}{field}={default_values[field]}"
                                                       for field in unset) +
                          f" (CORL's defaults; agents/{config.algorithm}.py lists its per-dataset values).")
    section.update({field: module.dataset_overrides(task).get(field, defaults(config_cls)[field]) for field in unset})
    check_positive(section, *(field for field in POSITIVE_FIELDS if field in section), prefix=prefix)
    for field in FRACTION_FIELDS:
        if field in section:
            check_fraction(section, field, low_open=True, prefix=prefix)
    require(len(section.hidden_dims) > 0 and all(isinstance(d, int) and d > 0 for d in section.hidden_dims),
            f"--config.{prefix}hidden_dims must be positive layer widths, got {section.hidden_dims!r}.")
    check_dataclass(section, config_cls, prefix, action_dim=1)
    return config


def validate_distill(config: ml_collections.ConfigDict, trains_denoiser: bool) -> None:
    """`distill.num_steps` is 0 (off) or a distilled sampler's steps, for an unguided denoiser this
    run trains."""
    if not trains_denoiser:
        refusal = ("distils the diffusion model, which this run does not train (" +
                   ("--config.data=real" if config.data == "real" else f"--config.augmentation={config.augmentation}")
                   + ")")
    elif config.guidance.condition != "none":
        refusal = f"cannot distil a guided denoiser yet (--config.guidance.condition={config.guidance.condition})"
    else:
        refusal = None
    check_distill(config.distill, refusal)


def validate_guidance(config: ml_collections.ConfigDict, trains_denoiser: bool) -> None:
    """A guided run trains a conditional denoiser (made one here when none is named); an unguided
    one an unconditional denoiser. Fills `config.diffusion.conditioning` in place."""
    guidance = config.guidance
    check_choice(guidance, "condition", CONDITIONS, prefix="guidance.")
    if guidance.condition == "none":
        require(config.diffusion.conditioning == "none",
                f"--config.diffusion.conditioning={config.diffusion.conditioning} trains a conditional model, but "
                "--config.guidance.condition=none gives it no condition: set --config.guidance.condition=return (or "
                "reward) or --config.diffusion.conditioning=none.")
        return
    require(trains_denoiser, f"--config.guidance.condition={guidance.condition} guides the diffusion model, which this "
            "run does not train (" + ("--config.data=real" if config.data == "real" else
                                      f"--config.augmentation={config.augmentation}") +
            "): use --config.data=synthetic or mixed with --config.augmentation=none.")
    if config.diffusion.conditioning == "none":
        config.diffusion.conditioning = "add"
    check_guidance_prompts(guidance)
    check_fraction(guidance, "discount", low_open=False, prefix="guidance.")
