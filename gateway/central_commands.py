"""Commands from central: ``{root}/cmd/{name}`` in, answered on the MQTT 5 response topic.

A request is a JSON object published with a ``ResponseTopic`` (and usually
``CorrelationData``, echoed in every reply so the requester can match them). A handler
answers with one or more :class:`Reply` parts: binary chunks, then a final JSON part.
Every reply carries the user properties ``part`` (0, 1, ...) and ``last``
(``true`` on the final one). Errors are a single JSON reply ``{"status": "error",
"error": "..."}``.

Replies are not records: they go straight to the broker (QoS 1, a few in flight at
a time) and are not kept in the outbox; if the link drops mid-answer the requester
asks again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

JSON = "application/json"
OCTETS = "application/octet-stream"

REPLY_WINDOW = 8
"""Reply parts published and not yet acknowledged, at most (bounds memory for big files)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One part of an answer."""

    body: bytes
    content_type: str = JSON

    @classmethod
    def json(cls, data: dict[str, Any]) -> Reply:
        """A JSON part."""
        return cls(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())


Handler = Callable[[dict[str, Any]], AsyncIterator[Reply]]
"""Answers one request (the parsed JSON object) with reply parts."""


def error_reply(message: str) -> Reply:
    """The single reply of a request that failed."""
    return Reply.json({"status": "error", "error": message})


def parse_request(payload: bytes) -> dict[str, Any]:
    """The request object; raises ``ValueError`` with a message for the requester."""
    try:
        request = json.loads(payload or b"{}")
    except ValueError as exc:
        raise ValueError(f"request is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ValueError("request must be a JSON object")
    return request
