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
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import compile_path

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


def _error(description: str, **more: Any) -> dict[str, Any]:
    """An error response for the schema: `{"detail": ...}` as JSON, also on routes that answer text or files."""
    return {"model": ErrorOut, "description": description, **more,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}


NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("no such job or evaluation")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _error("the request conflicts with the stored state")}
UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: _error("the database failed; nothing was acknowledged. Retry after `Retry-After` seconds",
                headers=_RETRY_HEADER)}
#: what every route behind a token may answer before it runs (503: the token is checked in the database)
GUARDED: dict[int | str, dict[str, Any]] = {**UNAVAILABLE,
    400: _error("the body could not be read as JSON"),
    401: _error("no token, or one that is unknown, revoked or expired",
                headers={"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}),
    403: _error("the token's scope does not allow this request"),
    413: _error("the request body is larger than the server accepts (setting max_body_bytes)")}
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


_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"})


async def _handle_http(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 for no route, 405, 400 for a body that is not JSON), with a 405's `Allow` naming
    every method of the path (Starlette names only those of the first route that matched it)."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        methods = {method.upper() for template, operations in request.app.openapi()["paths"].items()
                   if compile_path(template)[0].match(request.url.path) for method in operations
                   if method.upper() in _METHODS}
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(MergefrontError, _handle_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(HTTPException, _handle_http)
