"""Answers other than success, in OpenAI's error shape."""
from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


def error_type(status: int) -> str:
    """OpenAI's `type` for an HTTP status (the SDKs pick their exception class by the status)."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"


def error_body(status: int, message: str, code: str, **details: Any) -> dict[str, Any]:
    """{"error": {"message", "type", "param", "code", ...details}}, as OpenAI's API answers."""
    return {"error": {"message": message, "type": error_type(status), "param": None, "code": code, **details}}


class ProxyError(Exception):
    """An answer other than success: `code` says what happened (`model_not_found`, `backend_start_failed`, ...)."""

    def __init__(self, status: int, message: str, code: str, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.details = status, message, code, headers, details

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, self.code, **self.details)

    def response(self) -> Response:
        return Response(orjson.dumps(self.body()), status_code=self.status, headers=self.headers,
                        media_type="application/json")

    def sse(self) -> bytes:
        """This error as the last event of a stream that already answered 200, followed by `[DONE]`."""
        return b"data: " + orjson.dumps(self.body()) + b"\n\ndata: [DONE]\n\n"
