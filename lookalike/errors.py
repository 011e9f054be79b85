"""The domain errors of Lookalike.

Services raise these and nothing else for expected failures; one interceptor
(`lookalike.server.error_mapping`) turns each into its gRPC status, so
handlers hold no try/except noise and every client sees the same codes.
"""


class LookalikeError(Exception):
    """Base of every expected failure; the message is shown to the client."""


class InvalidArgument(LookalikeError):
    """The request itself is wrong: bad image, wrong dimension, bad name."""


class NotFound(LookalikeError):
    """A named model, collection or item does not exist."""


class AlreadyExists(LookalikeError):
    """A collection of that name exists already."""


class ResourceExhausted(LookalikeError):
    """The request is over a configured limit (batch size, k, pixels in total)."""


class FailedPrecondition(LookalikeError):
    """The request is valid but the system is not in a state to run it."""


class Unavailable(LookalikeError):
    """A dependency (the encoder service, a model still loading) is not reachable now."""
