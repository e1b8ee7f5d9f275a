"""The errors the data layer raises, so callers can tell "not there" from "there but broken"."""


class DatasetNotFoundError(FileNotFoundError):
    """No dataset under that id, name or path; the message says where we looked and what to do."""


class InvalidDatasetError(ValueError):
    """The dataset exists but cannot be used: truncated or corrupt file, missing keys, mismatched
    lengths, NaN/inf values, or dimensions that do not fit its environment."""


class UnknownEnvironmentError(ValueError):
    """An environment name we cannot build or find reference scores for."""
