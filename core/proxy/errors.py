"""Answers other than success, in OpenAI's error shape."""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ProxyError(Exception):
    """An answer other than success, in OpenAI's error shape: {"error": {"message", "type", ...details}}.

    `private` details (a backend's argv, log path and tail, diagnosis) are answered only to a request that carries
    the admin token; everyone else gets the message and where to find them."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None,
                 private: dict[str, Any] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers, self.details = status, message, kind, headers, details
        self.private = private or {}

    def response(self, admin: bool = False) -> JSONResponse:
        extra = self.private if admin else (
            {"details": "argv, log and diagnosis: GET /admin/status (admin token)"} if self.private else {})
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "code": self.status,
                                       **self.details, **extra}}, status_code=self.status, headers=self.headers)
