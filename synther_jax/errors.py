"""The errors synther_jax raises for bad input, so callers can tell "not there" from "there but
broken" and an entry point can print the message as one line: each says what is wrong, which file
or folder, and what to do. An optional package missing for what was asked is one of them too
(`require`)."""
import importlib


class DatasetNotFoundError(FileNotFoundError):
    """No dataset under that id, name or path; the message says where we looked and what to do."""


class InvalidDatasetError(ValueError):
    """The dataset exists but cannot be used: truncated or corrupt file, missing keys, mismatched
    lengths, NaN/inf values, too few transitions, or dimensions that do not fit its environment."""


class UnknownEnvironmentError(ValueError):
    """An environment name we cannot build or find reference scores for."""


class DamagedFileError(ValueError):
    """A file or checkpoint written by an earlier run cannot be read back; the message names it and
    says whether to delete it or move it aside, and what regenerates it."""


class WorkdirError(ValueError):
    """A work directory that this run cannot use: it cannot be created or written, or it holds the
    work of another run (other data or another config)."""


class DistributedSetupError(ValueError):
    """A multi-process job that cannot start as asked: incomplete or inconsistent coordinator
    variables, a coordinator that does not answer, no cross-process collectives, or processes
    started with different commands."""


class IncomparableRunsError(ValueError):
    """Runs that a comparison cannot put side by side, or whose results cannot carry an interval: a
    missing results.json, other tasks or update counts, too few seeds, episodes or evaluations."""


class MissingExtraError(ModuleNotFoundError):
    """An optional package that this use needs is not installed; the message names the pip extra
    that brings it (or, for the original SynthER code that `bench.original` imports, the packages
    to install). The core install (the `SynthER` API) needs none of them."""


def require(module: str, extra: str):
    """Imports and returns `module`, or raises MissingExtraError naming `synther_jax[extra]`.

    The packages of environments, datasets, plots and logging are optional extras (pyproject.toml),
    imported only by the modules that use them, through this function."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name is None or not (module == error.name or module.startswith(error.name + ".")):
            raise  # the package is there but one of its own dependencies is missing: its error says which
        raise MissingExtraError(f"{module.split('.')[0]} is not installed; it comes with the {extra!r} extra: "
                                f'pip install "synther_jax[{extra}]" (in a clone: pip install ".[{extra}]").',
                                name=module) from error
