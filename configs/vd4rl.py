"""Latent SynthER on V-D4RL-style pixel datasets (paper Section 4.3, Table 4, Appendix E).

    --config=configs/vd4rl.py:walker-walk-medium              DrQ+BC, 6 seeds, 5M latent transitions
    --config=configs/vd4rl.py:cheetah-run-expert,bc           pixel BC instead of DrQ+BC
    --config=configs/vd4rl.py:walker-walk-medium,smoke        every stage shrunk to CPU-minutes, with its own
                                                              tiny random-policy dataset
    --config.dataset=PATH                                     a V-D4RL hdf5 file, npz episode, or a folder of them

Defaults are V-D4RL's (DrQ+BC / BC hyperparameters, 550K updates, i.e. 1.1M loop steps at one
update per two, evaluation every 5000 updates on 10 episodes, 6 seeds) and the paper's (the
proprioceptive denoiser and its 100K training steps, 5M latent samples). The dataset defaults to
the folder `python -m launch.collect --pixels --env=ENV --level=LEVEL --out=runs/vd4rl/ENV/LEVEL`
writes.

What the paper leaves open, as fields of `config.latent` (chosen here, documented in docs/pixels.md):
- `encodings_per_transition` (1): how many randomly shifted encodings of each real transition
  the denoiser sees (h = f(aug(s)), as Appendix E writes it, drawn once);
- `reinit_heads` (False): stage 2 fine-tunes the stage-1 heads ("fine-tuning the heads of the
  networks", Appendix E) rather than training fresh ones;
- `agent_steps` (None: as many as stage 1): head updates on the latent samples.
"""
import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from agents import PIXEL_LEARNERS
from configs.checks import ConfigError, check_choice, check_dataclass, check_positive, require
from configs.tracking import validate_wandb, wandb_config
from synther_jax.diffusion import DiffusionConfig

ENVS = ("walker-walk", "cheetah-run")
LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")
OPTIONS = ("smoke", "bc")


def get_config(arg: str = "walker-walk-medium") -> ml_collections.ConfigDict:
    name, *options = arg.split(",")
    env = next((e for e in ENVS if name.startswith(e + "-")), None)
    level = name[len(env) + 1:] if env else None
    if env is None or level not in LEVELS or set(options) - set(OPTIONS):
        raise ConfigError(f"Unknown config {arg!r}: use '<env>-<level>[,smoke][,bc]' with env in {ENVS} and level in "
                          f"{LEVELS}.")

    config = ml_collections.ConfigDict()
    config.name = name
    config.env = env
    config.level = level
    config.seed = 0
    # A V-D4RL hdf5 file / npz episode / folder of them. None: render `render_steps` time steps of
    # a uniform random policy into the work directory first (the smoke setting).
    config.dataset = placeholder(str)
    config.dataset = f"runs/vd4rl/{env}/{level}"
    config.render_steps = 0
    config.episode_steps = 500  # agent steps per evaluation episode (and rendered episode)

    config.algorithm = "bc" if "bc" in options else "drqbc"
    config.num_seeds = 6
    config.agent_steps = 550_000
    config.batch_size = 256
    config.eval_every = 5_000
    config.eval_episodes = 10
    # On a CPU, pixel updates run as jitted calls of this many fully unrolled updates: XLA:CPU runs
    # convolution gradients about 30x slower inside a loop (lax.scan). Accelerators scan every
    # `eval_every` updates in one call.
    config.cpu_unrolled_updates = 2
    for algorithm, (_, config_cls) in PIXEL_LEARNERS.items():
        config[algorithm] = ml_collections.ConfigDict(
            {f.name: f.default for f in dataclasses.fields(config_cls) if f.name != "action_dim"})

    config.latent = ml_collections.ConfigDict()
    config.latent.encodings_per_transition = 1
    config.latent.reinit_heads = False
    config.latent.agent_steps = placeholder(int)  # None: config.agent_steps
    config.latent.batch_size = 256
    config.latent.num_samples = 5_000_000
    config.latent.encode_batch_size = 256  # transitions per jitted encoder call
    config.latent.analyze = True  # fidelity report of seed 0's synthetic latents against its real ones
    config.diffusion = ml_collections.ConfigDict(dataclasses.asdict(DiffusionConfig()))
    config.wandb = wandb_config()

    if "smoke" in options:
        config.dataset = None
        config.render_steps = 459  # 9 episodes of 51 time steps
        config.episode_steps = 50
        config.num_seeds = 2
        config.agent_steps = 40
        config.batch_size = 32
        config.eval_every = 40
        config.eval_episodes = 1
        config.latent.agent_steps = 400
        config.latent.num_samples = 20_000
        config.latent.encode_batch_size = 64
        config.diffusion.update(width=256, depth=3, dim_t=64, num_train_steps=2_000, steps_per_call=500,
                                checkpoint_every=1_000, sample_chunk_size=10_000)
    return config


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks the whole config before any work; raises ConfigError naming the field to change."""
    check_choice(config, "env", ENVS)
    check_choice(config, "level", LEVELS)
    check_choice(config, "algorithm", PIXEL_LEARNERS)
    require(config.dataset is not None or config.render_steps > 0,
            "No data: set --config.dataset to a V-D4RL hdf5 file or folder, or --config.render_steps > 0 to render "
            "a random-policy dataset first.")
    check_positive(config, "num_seeds", "agent_steps", "batch_size", "eval_every", "eval_episodes", "episode_steps",
                   "cpu_unrolled_updates")
    require(config.episode_steps <= 500, f"--config.episode_steps={config.episode_steps}: DMC episodes hold at most "
            "500 agent steps at action repeat 2.")
    check_positive(config.latent, "encodings_per_transition", "batch_size", "num_samples", "encode_batch_size",
                   prefix="latent.")
    if config.latent.agent_steps is not None:
        check_positive(config.latent, "agent_steps", prefix="latent.")
    section = config[config.algorithm]
    check_positive(section, "learning_rate", "std_steps", "feature_dim", "hidden_dim", prefix=f"{config.algorithm}.")
    check_dataclass(section, PIXEL_LEARNERS[config.algorithm][1], f"{config.algorithm}.", action_dim=1)
    check_dataclass(config.diffusion, DiffusionConfig, "diffusion.")
    validate_wandb(config)
