"""The one mapping of mergefront's errors to HTTP responses, and their documentation in the OpenAPI schema.

Bodies say what to fix in words: never SQL, bound parameters, stack traces or server paths. A 422 has FastAPI's
shape (`detail`: a list of `{loc, msg, type}`), whether pydantic or mergefront's own checks found the problem; the
other errors carry `detail` as one sentence.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from mergefront.errors import (
    AuthenticationError,
    ConflictError,
    EvaluationFailedError,
    InvalidSpecError,
    MergefrontError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
    public_message,
)

log = logging.getLogger(__name__)

_STATUS = {InvalidSpecError: 422, AuthenticationError: 401, PermissionDeniedError: 403, NotFoundError: 404,
           ConflictError: 409, StorageError: 503, EvaluationFailedError: 500}
#: what a 500 says; the error itself goes to the log only
UNEXPECTED = "the server failed to answer this request; its log has the details"
EXCERPT = 80  # characters of an offending input a 422 repeats
#: seconds a client should wait before it tries a request that met an unavailable database again
RETRY_AFTER = 1


class ErrorOut(BaseModel):
    """Why a request failed, in one sentence."""

    detail: str


_RETRY_HEADER = {"Retry-After": {"description": "seconds to wait before trying again", "schema": {"type": "integer"}}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "no such job or evaluation"}}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "the request conflicts with the stored state"}}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorOut, "headers": _RETRY_HEADER,
          "description": "the database failed; nothing was acknowledged. Retry after `Retry-After` seconds"}}
#: what every route that reads or writes the database may answer besides its success (422 FastAPI adds itself)
STORED = {**NOT_FOUND, **CONFLICT, **UNAVAILABLE}


async def _handle_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, InvalidSpecError):
        detail = [{"loc": ["body", *exc.loc], "msg": public_message(exc.message), "type": "value_error"}]
        return JSONResponse({"detail": _json_safe(detail)}, status_code=422)
    status = next((code for cls, code in _STATUS.items() if isinstance(exc, cls)), 500)
    if status == 500:
        log.error("answered 500 for %s: %s", type(exc).__name__, exc)
        return JSONResponse({"detail": UNEXPECTED}, status_code=500)
    headers = {"Retry-After": str(RETRY_AFTER)} if status == 503 else None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"detail": _json_safe(public_message(str(exc)))}, status_code=status, headers=headers)


async def _handle_validation(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422, made safe for inputs JSON cannot carry (NaN, infinity) or that are not JSON at all, each
    offending input cut to a short excerpt (never the whole body back)."""
    assert isinstance(exc, RequestValidationError)
    shown = {"input": _excerpt, "msg": lambda msg: public_message(str(msg))}
    detail = [{key: shown.get(key, _same)(error[key]) for key in ("type", "loc", "msg", "input") if key in error}
              for error in exc.errors()[:20]]
    return JSONResponse({"detail": _json_safe(jsonable_encoder(detail, custom_encoder={bytes: _bytes}))},
                        status_code=422)


def _same(value: Any) -> Any:
    return value


def _excerpt(value: Any) -> Any:
    """A scalar as it is (a string cut to EXCERPT characters); anything else as a short text."""
    if isinstance(value, bytes):
        value = _bytes(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def _bytes(value: bytes) -> str:
    return value.decode("utf-8", errors="replace")


def _json_safe(value: Any) -> Any:
    """`value` with its non-finite numbers written as strings ("nan", "inf"), which JSON has no numbers for."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {_json_safe(k): _json_safe(v) for k, v in value.items()}
    return value


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MergefrontError, _handle_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
