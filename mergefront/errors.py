"""The one error hierarchy of mergefront.

Domain code raises these; the service maps them to HTTP status codes in one handler.
"""

from __future__ import annotations

import re
from collections.abc import Sequence


class MergefrontError(Exception):
    """Base class of every error mergefront raises on purpose."""


class InvalidSpecError(MergefrontError):
    """A job spec (or a request) is invalid; `loc` names the offending field.

    `errors` holds every problem found, `(loc, message)` each, the first being `loc` and `message`.
    """

    def __init__(self, message: str, loc: Sequence[str | int] = (),
                 more: Sequence[tuple[Sequence[str | int], str]] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.loc = tuple(loc)
        self.errors = [(self.loc, message), *((tuple(where), text) for where, text in more)]

    def __str__(self) -> str:
        return "; ".join(_located(loc, message) for loc, message in self.errors)


def _located(loc: Sequence[str | int], message: str) -> str:
    where = ".".join(str(p) for p in loc)
    return f"{where}: {message}" if where else message


class AuthenticationError(MergefrontError):
    """The request carries no token, or one that is unknown, revoked or expired."""


class PermissionDeniedError(MergefrontError):
    """The token is valid, but its scope does not allow the request."""


class NotFoundError(MergefrontError):
    """The job or evaluation asked for does not exist."""


class ConflictError(MergefrontError):
    """The request conflicts with the stored state (for example a job leased by another runner)."""


class ClusterUnavailableError(MergefrontError):
    """The Ray cluster cannot run a job now: it cannot be reached, or cannot place the job's workers in time. The
    job waits, holding nothing, and is tried again later."""


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


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RAY_WHERE = re.compile(r"\s*\((?:pid|ip|node_id|actor_id)=[^)]*\)")
_PID = re.compile(r"\b(pid|ip|node_id|actor_id)[=:]\s*[\w.:-]+", re.I)
_ABS_PATH = re.compile(r"(?<![\w.:/~])(?!/v1/)(?:/[\w.+@~-]+){2,}/?")  # not the API's own routes
_TRACEBACK = "Traceback (most recent call last)"
_LONG_QUOTE = re.compile(r"(?<!\w)'([^'\s]{80})[^'\s]{4,}'")  # a long value a message quotes: its first 80 characters


def public_message(text: str, limit: int = 2000) -> str:
    """An error message fit for a response: no colour codes, stack traces, process ids or absolute paths (the
    server's log keeps the full text); a path is cut to its last part, `.../model.safetensors`, a long quoted value
    to its first 80 characters."""
    text = _RAY_WHERE.sub("", _ANSI.sub("", text))
    if _TRACEBACK in text:
        head, _, tail = text.partition(_TRACEBACK)
        lines = [line.strip() for line in tail.splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        text = f"{head.strip().rstrip(':')}: {last}" if head.strip() else last
    text = _LONG_QUOTE.sub(lambda m: f"'{m.group(1)}...'", _PID.sub(lambda m: f"{m.group(1)}=...", text))
    text = _ABS_PATH.sub(lambda m: ".../" + m.group(0).rstrip("/").rsplit("/", 1)[-1], text)
    return text if len(text) <= limit else text[:limit] + " ..."
