"""The error a user can fix, and its configuration case."""


class UserError(Exception):
    """A problem the user can fix; the message says what and how."""


class ConfigError(UserError, ValueError):
    """A configuration file, override or flag is invalid; the message names file and key."""
