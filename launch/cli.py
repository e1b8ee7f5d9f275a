"""What the pipeline entry points share besides the error boundary (`launch.boundary`): their two
flags and the errors in what a user asked for, which the boundary prints as one line."""
from absl import flags

from configs.checks import ConfigError
from synther_jax.errors import (DamagedFileError, DatasetNotFoundError, DistributedSetupError, InvalidDatasetError,
                                MissingExtraError, UnknownEnvironmentError, WorkdirError)

# `define_flags` defines flags for the entry point that calls it: disclaiming them here makes them
# that entry point's key flags, which its --help lists.
flags.disclaim_key_flags()

# Errors in what the user asked for: entry points print them as one line, without a traceback, and exit
# (`launch.boundary`, which also reports the operating system's errors on paths).
INPUT_ERRORS = (ConfigError, DamagedFileError, DatasetNotFoundError, DistributedSetupError, InvalidDatasetError,
                MissingExtraError, UnknownEnvironmentError, WorkdirError)



def define_flags(example: str) -> None:
    """The two flags of every pipeline entry point. Called under `if __name__ == "__main__"`, so
    entry points can import each other's stages without defining flags twice."""
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", None, f"A config file and its argument, e.g. {example}.")
    flags.DEFINE_string("workdir", None, "Where every stage's output goes; rerun the same command to resume.")
    flags.mark_flags_as_required(["config", "workdir"])
