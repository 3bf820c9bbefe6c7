"""The one error type of the service layer."""

from config.errors import UserError


class ServiceError(UserError, RuntimeError):
    """A service could not be installed, started or reached; the message says which and why."""
