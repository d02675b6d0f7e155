"""Every error leaves the API as problem+json (RFC 9457), mapped here and only here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from quanyu.domain.errors import (
    BusinessRuleViolation,
    Conflict,
    Forbidden,
    LedgerInvariantBroken,
    NotAuthenticated,
    NotFound,
    QuanyuError,
    TooManyAttempts,
    Unavailable,
    ValidationFailed,
)

PROBLEM = "application/problem+json"

STATUS: list[tuple[type[QuanyuError], int]] = [
    (NotAuthenticated, 401),
    (Forbidden, 403),
    (TooManyAttempts, 429),
    (NotFound, 404),
    (Conflict, 409),
    (ValidationFailed, 422),
    (BusinessRuleViolation, 422),
    (LedgerInvariantBroken, 500),
    (Unavailable, 503),
]


def status_of(exc: QuanyuError) -> int:
    return next((code for cls, code in STATUS if isinstance(exc, cls)), 400)


def problem_body(exc: QuanyuError, instance: str | None = None) -> dict[str, Any]:
    return {
        "type": f"/problems/{exc.code}",
        "title": exc.title,
        "status": status_of(exc),
        "detail": exc.detail,
        "code": exc.code,
        **({"instance": instance} if instance else {}),
        **jsonable_encoder(exc.fields),
    }


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


HtmlErrors = Callable[[Request, QuanyuError, int], Response]


def _is_page(request: Request) -> bool:
    """A console page (HTML) rather than the API or its docs."""
    path = request.url.path
    return not path.startswith(("/api/", "/docs", "/openapi", "/redoc", "/healthz"))


def install(app: FastAPI, html: HtmlErrors | None = None) -> None:
    """Errors as problem+json; on console pages, as HTML through ``html``."""

    @app.exception_handler(QuanyuError)
    async def _domain(request: Request, exc: QuanyuError) -> Response:
        if html is not None and _is_page(request):
            return await run_in_threadpool(html, request, exc, status_of(exc))
        body = problem_body(exc, request.url.path)
        headers = {}
        if isinstance(exc, TooManyAttempts):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, NotAuthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="quanyu"'
        return JSONResponse(body, status_code=body["status"], media_type=PROBLEM, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": "body" if e["type"] == "json_invalid" else field_path(e["loc"]),
                "message": e["msg"],
            }
            for e in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid"}
        if html is not None and _is_page(request):
            failed = ValidationFailed(f"{first['field']}: {first['message']}", field=first["field"])
            return await run_in_threadpool(html, request, failed, 422)
        return problem(
            422,
            "Invalid input",
            f"{first['field']}: {first['message']}",
            "validation_failed",
            field=first["field"],
            errors=errors,
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            exc.status_code,
            str(exc.detail),
            str(exc.detail),
            f"http_{exc.status_code}",
            instance=request.url.path,
        )
