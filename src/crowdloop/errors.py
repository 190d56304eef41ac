"""The one error tree of crowdloop.

Every error the library, the HTTP API or the CLI raises on purpose is a
:class:`CrowdloopError`. Each class carries the HTTP status the API answers with
and the exit code the ``crowdloop`` command ends with, so each front-end renders
any error in one place::

    CrowdloopError                      500  exit 1
    ├── InvalidInputError               422  exit 2   bad data or parameters
    │   ├── MissingColumnsError                       a required column is absent
    │   ├── EmptyInputError                           no rows to work on
    │   ├── MissingValuesError                        NaN / empty task, worker or label
    │   ├── UnknownLabelError                         a label outside the label set
    │   ├── InvalidParameterError                     a hyper-parameter out of range
    │   ├── UnknownMethodError                        no aggregator of that name
    │   ├── DataFileError                             a file that cannot be read
    │   ├── MemoryLimitError                          a fit would need more memory than allowed
    │   └── PayloadTooLargeError        413           an upload over the size limit
    ├── NotFittedError                  409  exit 3   fitted attribute read before fit
    ├── AuthenticationError             401  exit 4   no or wrong token
    ├── PermissionDeniedError           403  exit 5   token valid, action not allowed
    ├── NotFoundError                   404  exit 6   no such object (or not visible)
    ├── ConflictError                   409  exit 7   the state forbids the action
    ├── ArtifactError                   500  exit 9   a stored model artifact is gone or altered
    └── BusyError                       503  exit 8   the database was busy (deadlock, lock
        │                                             timeout), or the server is training all
        │                                             it may at once: retrying later is safe
        ├── DatabaseUnavailableError                  the server cannot reach its database
        │                                             (down, restarting, connection lost)
        └── ServerUnreachableError                    the SDK cannot connect to the server:
                                                      nothing was sent
"""

from __future__ import annotations


class CrowdloopError(Exception):
    """Base of every deliberate crowdloop error.

    ``detail`` is the human sentence; the class name is the machine-readable kind.
    """

    status_code: int = 500
    exit_code: int = 1

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def kind(self) -> str:
        """The short machine-readable name rendered as ``error`` in HTTP bodies."""
        return type(self).__name__

    def to_dict(self) -> dict[str, str]:
        """The JSON body the HTTP API answers with."""
        return {"error": self.kind, "detail": self.detail}


class InvalidInputError(CrowdloopError):
    """The caller's data or parameters are wrong; retrying the same call will not help."""

    status_code = 422
    exit_code = 2


class MissingColumnsError(InvalidInputError):
    """A frame or file lacks a required column."""


class EmptyInputError(InvalidInputError):
    """There is nothing to work on (no rows, or none left after filtering)."""


class MissingValuesError(InvalidInputError):
    """A required value (task, worker or label) is NaN or empty."""


class UnknownLabelError(InvalidInputError):
    """A label (for example a gold label) is not in the label set."""


class InvalidParameterError(InvalidInputError):
    """A hyper-parameter or option is outside its allowed range."""


class UnknownMethodError(InvalidInputError):
    """No aggregation method has the requested name."""


class DataFileError(InvalidInputError):
    """A data file cannot be read: unknown format, malformed content, missing file."""


class MemoryLimitError(InvalidInputError):
    """A fit whose estimated peak memory is over the limit; refused before it allocated anything large."""


class PayloadTooLargeError(InvalidInputError):
    """An upload larger than the configured limit; nothing of it was stored."""

    status_code = 413


class NotFittedError(CrowdloopError, AttributeError):
    """A fitted attribute (ending in ``_``) was read before ``fit`` was called."""

    status_code = 409
    exit_code = 3


class AuthenticationError(CrowdloopError):
    """No token, or a token that matches nobody."""

    status_code = 401
    exit_code = 4


class PermissionDeniedError(CrowdloopError):
    """The caller is known but may not do this."""

    status_code = 403
    exit_code = 5


class NotFoundError(CrowdloopError):
    """The object does not exist, or is not visible to the caller."""

    status_code = 404
    exit_code = 6


class ConflictError(CrowdloopError):
    """The object's current state forbids the action (e.g. a finished project)."""

    status_code = 409
    exit_code = 7


class ArtifactError(CrowdloopError):
    """A stored model artifact is missing or does not match its digest: the server's storage is at
    fault, not the request (500; the detail names the version, never the server's paths)."""

    status_code = 500
    exit_code = 9


class BusyError(CrowdloopError):
    """The database gave up on the request (deadlock, lock timeout); nothing was committed.

    The SDK retries these by itself: every write of the API is idempotent or all-or-nothing.
    """

    status_code = 503
    exit_code = 8


class DatabaseUnavailableError(BusyError):
    """The server cannot reach its database (refused, closed, shut down): a state of the service,
    not of the request, and it passes when the database is back. The API answers it with
    ``Retry-After``, health included, so a load balancer takes the instance out meanwhile."""


class ServerUnreachableError(BusyError):
    """The SDK (or the CLI over it) could not connect to the server: refused, no route, no such
    name, or no connection in time. The request never left, so repeating it later is safe, which
    is what exit 8 tells a script; a timeout waiting for an answer is not this (the request may
    have been done)."""
