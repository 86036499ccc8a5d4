"""Errors a user can cause; the CLI prints their message alone, without a traceback."""


class UserError(Exception):
    """Base of every error caused by input the user controls (paths, files, options)."""


class DatasetWarning(UserWarning):
    """Something odd about a dataset that does not stop the work (the CLI prints it as one line)."""


class ConfigError(UserError, ValueError):
    """A config key that does not exist, or a value it cannot take."""


class DatasetError(UserError, ValueError):
    """A dataset on disk is missing, laid out wrongly, or inconsistent.

    The message names the path and what was expected there.
    """


class FeatureFileError(UserError, ValueError):
    """A saved feature file is missing, unreadable or not in the vireid format."""


class Interrupted(UserError):
    """The user stopped the work (Ctrl-C); the message says how to go on."""


class NonFiniteFeatures(UserError):
    """Features holding NaN or infinite values: the model's output overflowed, or the file is broken."""
