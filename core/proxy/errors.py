"""Answers other than success, in OpenAI's error shape."""
from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse


class ProxyError(Exception):
    """An answer other than success, in OpenAI's error shape: {"error": {"message", "type", ...details}}."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status, self.message, self.kind, self.headers, self.details = status, message, kind, headers, details

    def response(self) -> JSONResponse:
        return JSONResponse({"error": {"message": self.message, "type": self.kind, "code": self.status,
                                       **self.details}}, status_code=self.status, headers=self.headers)
