"""What a search can fail with, each an HTTP status in the API."""


class BadQuery(ValueError):
    """A query that cannot be answered as asked (HTTP 400)."""


class NotFound(LookupError):
    """A `like` image id with no stored vector (HTTP 404)."""


class Unavailable(LookupError):
    """What the query needs is not there yet: a model, or stored vectors (HTTP 503)."""


class NotAnImage(ValueError):
    """Uploaded bytes that do not decode as an image (HTTP 415)."""
