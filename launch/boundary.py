"""The error boundary every entry point runs behind: a mistake in what the user asked for ends in
one line on stderr that says what is wrong and what to do, and a non-zero exit status.

    if __name__ == "__main__":
        boundary.run(main, INPUT_ERRORS)

`run` replaces `absl.app.run`. It turns flag and config-file mistakes (an unknown flag, a value of
the wrong type, a config file that does not load, a `--config.<field>` the config lacks, with
ml_collections' "did you mean" kept), `app.UsageError`, the listed input errors and the operating
system's errors on paths (missing, not a folder, no permission, disk full) into that line; Ctrl-C
ends the process at once, in one line saying whether rerunning resumes. `--help` lists the entry
point's own flags and exits with status 0. Anything else is a bug and keeps its traceback.
It also sets what the console shows (`show_progress_logs`).

This module imports only the standard library and absl, so `launch.sweep` can use it in
XManager's environment.
"""
import importlib.util
import logging as python_logging
import os
import re
import sys
import warnings
from typing import Callable, Mapping, Sequence, Tuple

from absl import app, flags, logging

INTERRUPTED_STATUS = 130  # the shell's status for a process ended by SIGINT
# Config fields that were replaced: an old command line is answered with the field to set instead.
REPLACED_FIELDS = {"modelled_terminals": ("terminals", "modelled (the old true), none (the old false) or env_rule")}


def program_name() -> str:
    """The entry point as the user typed it (`launch.offline` for `python -m launch.offline`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec.name if spec is not None else os.path.basename(sys.argv[0])


def one_line(error: BaseException) -> str:
    """The error's message on one line; an operating-system error on a path says what failed where."""
    if isinstance(error, OSError) and type(error).__module__ == "builtins" and error.filename is not None:
        where = error.filename if error.filename2 is None else f"{error.filename} -> {error.filename2}"
        text = f"{error.strerror}: {where}; check the path and that you may read and write there."
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def fail(message: str, status: int = 1) -> None:
    """Ends the process with `<program>: <message>` on stderr, one line."""
    print(f"{program_name()}: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.exit(status)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def _config_load_error(flag: flags.Flag, error: OSError) -> str:
    cause = error.__cause__ or error
    return (f"--{flag.name}: cannot load the config file ({_last_line(str(cause))}); "
            "give the path of a config file, relative to the folder you run from, and its argument (see --helpshort).")


def _field_error(argv: Sequence[str], error: Exception) -> str:
    """ml_collections' error for a `--config.<field>` override naming no field, with its "did you mean"."""
    while isinstance(error, BaseException) and error.args:  # AttributeError(KeyError("'name'\nDid you mean..."))
        error = error.args[0]
    key, _, hint = str(error).partition("\n")
    key = key.strip("'\"")
    option = next((arg.split("=")[0] for arg in argv[1:] if arg.split("=")[0].endswith(f".{key}")), f"--config.{key}")
    if key in REPLACED_FIELDS:
        field, values = REPLACED_FIELDS[key]
        return f"{option} was replaced by {option.rpartition('.')[0]}.{field}: set it to {values}."
    return f"{option}: the config has no field {key!r}. {hint.strip()}".strip()


def parse_flags(argv: Sequence[str]):
    """`absl.app`'s flag parsing, with each mistake reported as one line instead of a traceback."""
    try:
        remaining = flags.FLAGS(argv)
    except SystemExit as done:  # --help and its kin print the help and exit with status 1: a request met, no failure
        sys.exit(0 if done.code == 1 else done.code)
    except flags.Error as error:
        flag_part, wrapped, trace = str(error).partition(": Error whilst parsing config file:")
        if wrapped:  # ml_collections wraps get_config's error in its traceback: keep the error's message
            fail(f"{flag_part}: {_last_line(trace).split(': ', 1)[-1]}")
        fail(f"{flag_part.rstrip('.')}. Pass --helpshort to see the flags.")
    except (AttributeError, KeyError) as error:  # a --config.<field> that the config does not have
        fail(_field_error(argv, error))
    except OSError as error:  # an override of a config whose file did not load
        fail(_config_load_error(next(iter(_config_flags())), error))
    for flag in _config_flags():
        try:  # ml_collections defers a config file's load error to the first use of the config
            getattr(flag.value, "lock", None)
        except OSError as error:
            fail(_config_load_error(flag, error))
    return remaining


def _config_flags():
    """The ml_collections config-file flags defined (none where ml_collections is not installed)."""
    try:
        from ml_collections.config_flags.config_flags import is_config_flag
    except ImportError:
        return []
    return [flag for flag in flags.FLAGS._flags().values() if is_config_flag(flag)]


class _ThirdPartyInfo(python_logging.Filter):
    """Drops INFO and DEBUG records of the listed packages (they log through absl's logger, so only
    their file paths tell them apart) unless the package's own logger is set lower, e.g. with
    `--logger_levels=orbax:INFO`."""

    def __init__(self, packages: Sequence[str]):
        super().__init__()
        self.folders = {}  # package -> the folder it is installed in
        for package in packages:
            spec = importlib.util.find_spec(package)
            if spec is not None and spec.submodule_search_locations:
                self.folders[package] = tuple(os.path.join(folder, "") for folder in spec.submodule_search_locations)

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.levelno >= python_logging.WARNING:
            return True
        for package, folders in self.folders.items():
            if record.pathname.startswith(folders):
                return record.levelno >= (python_logging.getLogger(package).level or python_logging.WARNING)
        return True


# Their INFO lines: one per checkpoint, backend probing, the MuJoCo version and PyOpenGL's
# accelerator probe at import.
QUIET_PACKAGES = ("orbax", "jax", "minari", "dm_control", "OpenGL")


class _DropMessages(python_logging.Filter):
    """Drops log records whose message matches `pattern`, whatever their level."""

    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: python_logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


# dm_control passes on MuJoCo's notice that the `settotalmass` attribute of its own models (cheetah,
# for one) is deprecated: a warning at every environment built, and nothing a user can change.
NOTHING_TO_ACT_ON = r"compiler attribute 'settotalmass' is deprecated"


def show_progress_logs() -> None:
    """What the console shows: our progress and results at INFO (absl's default after flag parsing;
    `--verbosity=-1` hides them, `--verbosity=1` adds DEBUG), without the INFO lines of Orbax, JAX,
    Minari, dm_control and PyOpenGL (`--logger_levels=orbax:INFO` brings Orbax's back), and without warnings that
    say nothing to act on: GLFW's missing DISPLAY on a headless machine (rendering uses
    MUJOCO_GL=egl), Gymnasium's advice to move from the v4 environments (D4RL's scores are
    measured on them), Minari's notes on optional metadata and MuJoCo's deprecation notice for
    dm_control's models."""
    logging.get_absl_handler().addFilter(_ThirdPartyInfo(QUIET_PACKAGES))
    logging.get_absl_handler().addFilter(_DropMessages(NOTHING_TO_ACT_ON))
    warnings.filterwarnings("ignore", message=r".*DISPLAY environment variable.*")
    warnings.filterwarnings("ignore", message=r".*is out of date. You should consider upgrading.*")
    warnings.filterwarnings("ignore", message=r".*(dataset_size|author|code_permalink|minari_version|metadata).*",
                            module=r"minari.*")


def interrupted(resumes: bool) -> None:
    """Ends a Ctrl-C'd process at once with the line that says whether a rerun resumes.

    The KeyboardInterrupt has already left every `with` block (the work directory's lock is
    released, the checkpoints on disk are whole), but a normal exit would still wait, in JAX's
    runtime teardown, for the computation already dispatched (a whole chunk of updates, minutes on
    a slow machine): so the logs are flushed and the process ends without that teardown.
    """
    print(f"{program_name()}: interrupted; rerun the same command to "
          f"{'resume where it stopped' if resumes else 'start again'}.", file=sys.stderr, flush=True)
    python_logging.shutdown()
    sys.stdout.flush()
    os._exit(INTERRUPTED_STATUS)


def one_of_many_processes(environ: Mapping[str, str]) -> bool:
    """Whether the environment starts this process as one of a multi-process JAX job (the variables
    that `synther_jax.distributed.initialize` reads)."""
    return ("JAX_COORDINATOR_ADDRESS" in environ or int(environ.get("SLURM_NTASKS", "1")) > 1
            or "OMPI_MCA_orte_hnp_uri" in environ)


def run(main: Callable, input_errors: Tuple[type, ...] = (), resumes: bool = True, one_process: bool = False) -> None:
    """`absl.app.run(main)` behind the boundary; `input_errors` are the library's exceptions for bad
    input, printed as one line. `resumes` says whether a rerun of an interrupted command resumes.
    A `one_process` entry point started as one of a multi-process job says so and exits before any work."""

    def guarded(argv):
        show_progress_logs()
        if one_process and one_of_many_processes(os.environ):
            fail("a one-process tool, started here as one of a multi-process job (JAX_COORDINATOR_ADDRESS, "
                 "SLURM_NTASKS > 1 or mpirun): start it as a single process; launch.offline and launch.synthesize "
                 "run on many.")
        try:
            return main(argv)
        except KeyboardInterrupt:
            interrupted(resumes)
        except app.UsageError as error:
            fail(f"{one_line(error)} Pass --helpshort to see the flags.")
        except (*input_errors, OSError) as error:
            fail(one_line(error))

    app.run(guarded, flags_parser=parse_flags)
