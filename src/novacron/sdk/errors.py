"""The SDK's exceptions: every failure of a call is one of these, never an httpx error.

An error answer of the API is an RFC 9457 problem document; ``ApiError`` carries its parts
(status, title, detail, the per-field ``errors``) so a caller can react to the field at fault.
"""

from __future__ import annotations

from typing import Any

import httpx


class NovaCronError(Exception):
    """The base of every SDK error."""


class ApiError(NovaCronError):
    """The server answered with an error status (the body: problem+json, or a synthesized one)."""

    def __init__(self, status: int, problem: dict[str, Any], headers: httpx.Headers | None = None) -> None:
        self.status = status
        self.problem = problem
        self.headers = headers or httpx.Headers()
        self.title = str(problem.get("title") or "")
        self.detail = str(problem.get("detail") or "")
        raw = problem.get("errors")
        #: ``[{"field": "body.name", "reason": "..."}]``: which input was refused, and why
        listed = raw if isinstance(raw, list) else []
        self.errors: list[dict[str, Any]] = [e for e in listed if isinstance(e, dict)]
        super().__init__(self.detail or self.title or f"HTTP {status}")

    @property
    def fields(self) -> list[str]:
        """The names of the refused inputs (``body.name``, ``query.limit``, ``header.If-Match``)."""
        return [str(e.get("field")) for e in self.errors if e.get("field")]

    @classmethod
    def of(cls, response: httpx.Response) -> ApiError:
        """The error an error response stands for (``response`` must have been read)."""
        return cls(response.status_code, problem_of(response), response.headers)


class TransportError(NovaCronError):
    """The server could not be reached, or the connection broke (after the retries allowed)."""

    def __init__(self, message: str, cause: httpx.TransportError) -> None:
        super().__init__(message)
        self.cause = cause


class TaskFailed(NovaCronError):
    """A waited-for task ended ``failed`` or ``cancelled``; ``task`` is its last state."""

    def __init__(self, task: dict[str, Any]) -> None:
        self.task = task
        what = f"{task.get('kind', 'task')} {task.get('resource_id', '')}".strip()
        reason = task.get("error") or "no error message recorded"
        super().__init__(f"task {task.get('id')} ({what}) {task.get('state')}: {reason}")


class WaitTimeout(NovaCronError):
    """A wait ran out of time; the operation goes on in the background."""

    def __init__(self, message: str, last: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.last = last


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error response; a synthesized one when the body is not one."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        return body
    text = response.text.strip()[:500] if response.content else ""
    return {
        "type": "about:blank",
        "title": response.reason_phrase or f"HTTP {response.status_code}",
        "status": response.status_code,
        "detail": text or response.reason_phrase or "",
    }
