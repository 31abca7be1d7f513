"""One JSON error shape for the whole API: a machine-readable `code` and a human `message`."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("byoc.errors")


class ApiError(Exception):
    """An error the client can act on. Raised by services, rendered by the handler below."""

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


class RawJSONError(Exception):
    """An error whose body is fixed by someone else's contract (OAuth, CXone), sent as is."""

    def __init__(self, status_code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        super().__init__(str(body))
        self.status_code = status_code
        self.body = body
        self.headers = headers


class StoredResponse(Exception):
    """The request was answered before (same Idempotency-Key, same request): send that answer again."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(status_code)
        self.status_code = status_code
        self.body = body


def not_found(what: str, ident: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"No {what.replace('_', ' ')} with id {ident!r}.")


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            error_body(exc.code, exc.message, exc.details), exc.status_code, headers=exc.headers
        )

    @app.exception_handler(StoredResponse)
    async def _stored(_: Request, exc: StoredResponse) -> JSONResponse:
        return JSONResponse(exc.body, exc.status_code, headers={"Idempotent-Replayed": "true"})

    @app.exception_handler(RawJSONError)
    async def _raw_error(_: Request, exc: RawJSONError) -> JSONResponse:
        return JSONResponse(exc.body, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "path": _field_path(err.get("loc", ())),
                "message": err.get("msg", "invalid"),
                "type": err["type"],
            }
            for err in exc.errors()
        ]
        if any(err["type"] == "json_invalid" for err in errors):
            return JSONResponse(
                error_body("malformed_json", "The request body is not valid JSON.", errors), 422
            )
        first = errors[0] if errors else {"path": "", "message": "invalid"}
        message = f"{first['path']}: {first['message']}" if first["path"] else str(first["message"])
        return JSONResponse(error_body("validation_error", message, errors), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, f"http_{exc.status_code}")
        return JSONResponse(
            error_body(code, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return JSONResponse(
            error_body("internal_error", "Something went wrong on our side; it was logged."), 500
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    @app.exception_handler(ConnectionError)
    async def _database_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable: %s", type(getattr(exc, "orig", exc)).__name__)
        return JSONResponse(
            error_body("database_unavailable", "The database is not answering; retry shortly."),
            503,
            headers={"Retry-After": "5"},
        )
