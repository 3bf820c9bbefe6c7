"""The one error type of the service layer."""


class ServiceError(RuntimeError):
    """A service could not be installed, started or reached; the message says which and why."""
