"""The errors synther_jax raises for bad input, so callers can tell "not there" from "there but
broken" and an entry point can print the message as one line: each says what is wrong, which file
or folder, and what to do."""


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
