"""The app's outer guards: trusted Host headers, CORS (only when configured) and a request body limit.

Host and CORS checks are Starlette's own middlewares; Starlette has no body limit, so `BodyLimitMiddleware` counts
the bytes as they arrive: a stated Content-Length over the limit is refused before reading, a chunked body as soon
as it passes the limit.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mergefront.service.settings import Settings


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`, whether it states its length or arrives in chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the request body is larger than this server accepts ({self.max_bytes} bytes)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            error = self._too_large()
            await JSONResponse({"detail": error.detail}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise self._too_large()  # FastAPI passes an HTTPException raised while reading the body on
            return message

        await self.app(scope, limited, send)


def install_guards(app: FastAPI, settings: Settings) -> None:
    """Add the middlewares (body limit innermost, Host check outermost)."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.allowed_hosts)
