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
    """The user stopped the work (Ctrl-C, or SIGTERM from a job scheduler); the message says how to go on.
    ``exit_code``: 130 for Ctrl-C, 143 for SIGTERM, as shells report them."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (what job schedulers send before they kill): stopped where Ctrl-C would stop."""


class NonFiniteFeatures(UserError):
    """Features holding NaN or infinite values: the model's output overflowed, or the file is broken."""
