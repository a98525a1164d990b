"""Response bodies shaped like the Supervisor's: JSON envelopes and aiohttp plain-text errors."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web

UNKNOWN_ERROR = "Unknown error, see Supervisor logs"


class ApiError(Exception):
    """An error a handler answers with the JSON error envelope (like APIError)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        job_id: str | None = None,
        error_key: str | None = None,
        extra_fields: dict[str, Any] | None = None,
    ) -> None:
        """Keep what the envelope needs."""
        super().__init__(message)
        self.message = message
        self.status = status
        self.job_id = job_id
        self.error_key = error_key
        self.extra_fields = extra_fields


def api_ok(data: Any = None) -> web.Response:
    """``{"result": "ok", "data": ...}``; handlers without data answer ``{}``."""
    return web.json_response({"result": "ok", "data": {} if data is None else data})


def api_error(err: ApiError) -> web.Response:
    """``{"result": "error", "message": ...}`` plus the optional fields the Supervisor adds."""
    body: dict[str, Any] = {"result": "error", "message": err.message or UNKNOWN_ERROR}
    if err.job_id is not None:
        body["job_id"] = err.job_id
    if err.error_key is not None:
        body["error_key"] = err.error_key
    if err.extra_fields is not None:
        body["extra_fields"] = err.extra_fields
    return web.json_response(body, status=err.status)


def plain_error(status: int) -> web.Response:
    """The plain-text body aiohttp sends for an HTTP exception (middleware rejections)."""
    if status == HTTPStatus.INTERNAL_SERVER_ERROR:
        # What aiohttp answers when a handler raises an unexpected exception.
        text = "500 Internal Server Error\n\nServer got itself in trouble"
    else:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Error"
        text = f"{status}: {reason}"
    return web.Response(status=status, text=text, content_type="text/plain")


def forced_error(status: int) -> web.Response:
    """Body for an ``http_status`` fault: JSON envelope for 400, aiohttp plain text otherwise."""
    if status == HTTPStatus.BAD_REQUEST:
        return api_error(ApiError(UNKNOWN_ERROR))
    return plain_error(status)
