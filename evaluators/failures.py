"""Why an evaluation failed, sorted into failures worth another try and failures that would only repeat.

Transient: the worker or its node died (killed, out of memory), a deadline passed, a connection dropped; the same
candidate may succeed on a fresh worker. Deterministic: the job's own code or files are wrong (an import that
fails, a missing file, a function called with the wrong arguments, a bad value); evaluating the same candidate again
fails the same way, so it is not retried. A worker whose constructor raised (the job's evaluator could not be
imported, say) is judged by the error its constructor raised.
"""

from __future__ import annotations

import builtins
import re
from dataclasses import dataclass

#: errors of the job's code, files or settings: the same candidate fails again the same way
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ImportError, SyntaxError, NameError, AttributeError, TypeError, ValueError, LookupError, ArithmeticError,
    AssertionError, NotImplementedError, FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)
#: errors of the moment, whatever their class: out of memory (torch's, CUDA's), a deadline, a connection
_TRANSIENT_NAMES = ("OutOfMemoryError", "MemoryError", "TimeoutError", "ConnectionError")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_RAY_WHERE = re.compile(r"\s*\((?:pid|ip|node_id|actor_id)=[^)]*\)")
_RAISED = re.compile(r"^(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Failure:
    """An evaluation's error as stored (`text`: class and message) and whether another try may succeed."""

    text: str
    transient: bool


def classify(error: BaseException) -> Failure:
    """The failure `error` stands for; an actor that died in its constructor is judged by what it raised."""
    raised = _init_error(error)
    if raised is not None:
        name, message = raised
        return Failure(_describe_parts(name, message), _transient_name(name))
    text = describe(error)
    if any(name in _TRANSIENT_NAMES for name in _names(type(error))):
        return Failure(text, True)
    return Failure(text, not isinstance(error, DETERMINISTIC))


def describe(error: BaseException) -> str:
    """`ClassName: message` of what the evaluation raised (not of Ray's wrapper around it), without colour codes
    or Ray's process and actor ids, so that the same error reads the same from any worker; cut to 4,000
    characters."""
    cause = getattr(error, "cause", None)  # a RayTaskError carries what the task raised
    if isinstance(cause, BaseException) and cause is not error:
        return describe(cause)
    return _describe_parts(type(error).__name__, str(error))


def _describe_parts(name: str, message: str) -> str:
    text = f"{name}: {_RAY_WHERE.sub('', _ANSI.sub('', message)).strip()}"
    return text if len(text) <= 4000 else text[:4000] + " ..."


def _names(cls: type[BaseException]) -> list[str]:
    return [c.__name__ for c in cls.__mro__]


def _transient_name(name: str) -> bool:
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, BaseException):
        return any(n in _TRANSIENT_NAMES for n in _names(cls)) or not issubclass(cls, DETERMINISTIC)
    return name in _TRANSIENT_NAMES or not any(name == c.__name__ for c in DETERMINISTIC)


def _init_error(error: BaseException) -> tuple[str, str] | None:
    """(class name, message) of what a Ray actor's constructor raised, when `error` is that actor's death."""
    if not getattr(error, "actor_init_failed", False):
        return None
    found = _RAISED.findall(str(error))
    return found[-1] if found else None
