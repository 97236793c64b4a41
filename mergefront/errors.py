"""The one error hierarchy of mergefront.

Domain code raises these; the service maps them to HTTP status codes in one handler.
"""

from __future__ import annotations

from collections.abc import Sequence


class MergefrontError(Exception):
    """Base class of every error mergefront raises on purpose."""


class InvalidSpecError(MergefrontError):
    """A job spec (or a request) is invalid; `loc` names the offending field."""

    def __init__(self, message: str, loc: Sequence[str | int] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = tuple(loc)

    def __str__(self) -> str:
        where = ".".join(str(p) for p in self.loc)
        return f"{where}: {self.message}" if where else self.message


class NotFoundError(MergefrontError):
    """The job or evaluation asked for does not exist."""


class ConflictError(MergefrontError):
    """The request conflicts with the stored state (for example a job leased by another runner)."""


class EvaluationFailedError(MergefrontError):
    """A candidate could not be merged or evaluated."""


class StorageError(MergefrontError):
    """The database failed; the transaction was rolled back.

    `transient` errors (a dropped connection, a serialization failure, a busy SQLite file) may succeed when the
    same work is tried again; the others will not.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
