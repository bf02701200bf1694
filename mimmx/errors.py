"""Errors whose message is the whole story for the user: the CLI, notebooks and app show them
without a traceback. Library code raises these (or ValueError subclasses) for bad input."""


class UserError(Exception):
    """Bad input or a missing prerequisite, with a message that says how to fix it."""


class ConfigError(UserError, ValueError):
    """A malformed configuration: the message names the offending key."""
