"""Structured logs: one JSON object a line, carrying the ``trace_id`` and ``span_id`` of the span
the line was written in, so a user goes from an alert to a trace (``GET /v1/traces/{id}``) to the
log lines of that trace (``grep <trace_id>``), on the server and on every agent alike.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from novacron.monitoring.tracing import current_ids


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", "service", "trace_id", "span_id", "exception"}``."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": self.service,
        }
        ids = current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(service: str, level: int = logging.INFO) -> None:
    """Log JSON lines to stderr for this process (the server's or an agent's ``main``)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
