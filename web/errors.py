"""Errors as API.md promises them: `{"error": {"code", "message"}}` with the
status that fits, a sentence a person can act on, never a stack trace.

The one place where the engine's errors become HTTP: the error middleware maps
a refusal's kind to its status, a lost ledger to 503, and aiohttp's own HTTP
errors into the same shape."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable

import msgspec
from aiohttp import ClientConnectionResetError, web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from engine.errors import LEDGER_DOWN, DuplicateVin, Fenced, RefusalKind, Refused

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ErrorBody(msgspec.Struct, frozen=True):
    code: str
    message: str


class ErrorEnvelope(msgspec.Struct, frozen=True):
    error: ErrorBody


class DuplicateVinBody(msgspec.Struct, frozen=True):
    """A duplicate VIN's error names the vehicle that has it."""

    code: str
    message: str
    vehicle_id: uuid.UUID


class DuplicateVinEnvelope(msgspec.Struct, frozen=True):
    error: DuplicateVinBody


#: A refusal's kind as an HTTP status (API.md "Errors").
REFUSAL_STATUS: dict[RefusalKind, int] = {
    "invalid": 422,
    "conflict": 409,
    "not_found": 404,
    "forbidden": 403,
}


class ApiError(Exception):
    """An error a client caused or can act on; it becomes the response as is."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = msgspec.json.encode(ErrorEnvelope(ErrorBody(code, message)))
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


# aiohttp's own HTTP errors (no route, wrong method, body too large) in our shape.
_HTTP_CODES = {
    400: ("malformed", "The request could not be read."),
    401: ("unauthenticated", "Sign in again: the token is missing, invalid or expired."),
    403: ("forbidden", "Your account may not do this."),
    404: ("not_found", "Nothing exists at this address."),
    405: ("method_not_allowed", "This address does not accept that method."),
    413: ("body_too_large", "The request body is larger than the engine accepts."),
    415: ("unsupported_media_type", "Send the body as JSON."),
}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as err:
        return error_response(err.status, err.code, err.message, err.headers)
    except DuplicateVin as err:
        body = DuplicateVinEnvelope(DuplicateVinBody(err.code, err.message, err.vehicle_id))
        return web.Response(
            status=REFUSAL_STATUS[err.kind],
            body=msgspec.json.encode(body),
            content_type="application/json",
        )
    except Refused as err:
        return error_response(REFUSAL_STATUS[err.kind], err.code, err.message)
    except Fenced as err:  # several nodes: the auction's partition moved meanwhile
        logger.warning("fenced off on %s %s: %s", request.method, request.path, err)
        return error_response(
            503,
            "unavailable",
            "This auction is moving between servers of the engine; nothing changed. "
            "Please try again in a moment.",
        )
    except ClientConnectionResetError as err:
        # The request's own connection closed under it (aiohttp's write to a closing
        # transport, as in a WebSocket handshake a client gave up on): not the ledger,
        # and nobody is left to read an answer.
        logger.info("the client left during %s %s: %r", request.method, request.path, err)
        return error_response(400, "connection_lost", "The connection closed before the answer.")
    except LEDGER_DOWN as err:
        logger.warning("ledger unreachable on %s %s: %r", request.method, request.path, err)
        return error_response(
            503,
            "unavailable",
            "The engine cannot reach its ledger right now; nothing was lost. "
            "Please try again shortly.",
        )
    except web.RequestPayloadError:
        # A body that does not decode as its Content-Encoding says (bad gzip…).
        return error_response(400, "malformed", "The request body could not be read.")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
        return error_response(exc.status, code, message, _kept_headers(exc))
    except Exception:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(
            500, "internal", "Something went wrong on our side; please try again."
        )


def _kept_headers(exc: web.HTTPException) -> dict[str, str] | None:
    """What aiohttp's own error says in headers that our shape must keep: a 405's
    `Allow` (RFC 9110 requires it: the methods the address takes)."""
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow is not None else None


def install_parser_errors() -> None:
    """Requests aiohttp's HTTP parser refuses (huge headers, an over-long request
    line, an encoding it cannot read) never reach a middleware: answer them in
    our shape too, without echoing the input or naming a library."""
    if getattr(RequestHandler.handle_error, "_dealer360", False):
        return
    original = RequestHandler.handle_error

    def handle_error(
        self: RequestHandler,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> StreamResponse:
        if not 400 <= status < 500:
            return original(self, request, status, exc, message)
        logger.debug("refused an unreadable request: %r", exc)
        code, text = _HTTP_CODES.get(status, ("malformed", "The request could not be read."))
        if status == 400:
            code, text = "malformed", "The request could not be read."
        response = error_response(status, code, text)
        response.force_close()  # the parser's state is unknown: never reuse it
        return response

    handle_error._dealer360 = True  # type: ignore[attr-defined]
    RequestHandler.handle_error = handle_error  # type: ignore[method-assign]
