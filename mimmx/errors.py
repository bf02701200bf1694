"""Errors whose message is the whole story for the user: the CLI, notebooks and app show them
without a traceback. Library code raises these (or ValueError subclasses) for bad input."""


class UserError(Exception):
    """Bad input or a missing prerequisite, with a message that says how to fix it."""


class ConfigError(UserError, ValueError):
    """A malformed configuration: the message names the offending key."""


class DivergedError(UserError, FloatingPointError):
    """Training produced a non-finite loss, weight or statistic; the message names the step
    and the knobs that usually cause it. Such a run is never stored or scored."""


class RunWarning(UserWarning):
    """A run or scenario that trains but may not teach what it is meant to (a model kept at
    chance, a factor with no minority cells)."""
