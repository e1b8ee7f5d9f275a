"""The experiment-tracking section every launcher's config carries.

`--config.wandb.project=NAME` logs the run to Weights & Biases as well as to TensorBoard (the same
scalars, plus the config); `--config.wandb.mode=offline` writes the W&B run into the work
directory without a network, for a later `wandb sync`. Unset (the default), W&B is never imported.
"""
import ml_collections
from ml_collections.config_dict import placeholder

from configs.checks import ConfigError, check_choice, require
from synther_jax.metrics import WANDB_MODES, check_wandb_installed


def wandb_config() -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(project=placeholder(str), entity=placeholder(str), group=placeholder(str),
                                          name=placeholder(str), mode="online"))


def validate_wandb(config: ml_collections.ConfigDict) -> None:
    section = config.wandb
    check_choice(section, "mode", WANDB_MODES, prefix="wandb.")
    if section.project is not None:
        require(section.project != "", "--config.wandb.project must name a W&B project, or be left unset.")
        try:
            check_wandb_installed()
        except ImportError as error:
            raise ConfigError(str(error)) from None

