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
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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


@dataclass(frozen=True, slots=True)
class FieldRule:
    """One field of a command's request: its JSON type, and whether it must be there."""

    kind: type | tuple[type, ...]
    required: bool = False
    max_chars: int = 256
    """For strings: longer ones are refused (nothing long is echoed back)."""


RequestSchema = Mapping[str, FieldRule]

COMMON_FIELDS: RequestSchema = {"expires": FieldRule(str, max_chars=40)}
"""Fields every command may carry (``expires`` of a signed command)."""

_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               dict: "an object", list: "an array"}  # fmt: skip


class Handler(Protocol):
    """Answers one request (the parsed JSON object, checked against ``schema``)."""

    schema: RequestSchema

    def __call__(self, request: dict[str, Any], /) -> AsyncIterator[Reply]:
        """The reply parts."""
        ...


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_JSON_NAMES.get(k, k.__name__) for k in kinds)


def check_request(request: dict[str, Any], schema: RequestSchema) -> None:
    """Raise ``ValueError`` naming the first field that is unknown, missing or mistyped."""
    rules = {**COMMON_FIELDS, **schema}
    for name in request:
        if name not in rules:
            known = ", ".join(sorted(rules))
            raise ValueError(f"unknown field {name[:40]!r}; known: {known}")
    for name, rule in rules.items():
        if name not in request:
            if rule.required:
                raise ValueError(f"field {name!r} is required")
            continue
        value = request[name]
        kinds = rule.kind if isinstance(rule.kind, tuple) else (rule.kind,)
        # JSON true is a Python bool, which is an int: only accepted where bool is.
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise ValueError(f"field {name!r} must be {_type_name(rule.kind)}")
        if isinstance(value, str) and len(value) > rule.max_chars:
            raise ValueError(f"field {name!r} is longer than {rule.max_chars} characters")


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
