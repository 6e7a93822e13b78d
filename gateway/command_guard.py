"""Who may command the gateway, and how much: the checks before a handler runs.

A command from central is admitted only when
- its response topic lies under the reply prefix (``{root}/reply/`` unless
  configured): the gateway never publishes a reply on a topic of the requester's
  choosing elsewhere (its own alarm topic, another tenant's tree);
- it is at most ``max_request_bytes`` long, within the rate (a token bucket:
  ``rate_per_s`` sustained, ``burst`` at once) and the concurrency
  (``max_concurrent`` in progress);
- when ``[commands] central_public_key`` is set: it carries the MQTT 5 user property
  ``sig``, the centre's Ed25519 signature (standard base64) over
  :data:`COMMAND_CONTEXT`, the command topic, NUL, the response topic, NUL, the
  correlation data, NUL and the payload; the payload's ``expires`` (RFC 3339) is in
  the future and at most ``max_signed_age_s`` ahead; and the same signature was not
  seen before (a replay).

A refusal is a :class:`CommandError` whose message the requester receives; a response
topic outside the prefix gets no reply at all (there is nowhere safe to send one) and
is counted and logged.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.config import CommandsSection
from gateway.errors import CommandError
from gateway.ratelimit import TokenBucket

COMMAND_CONTEXT = b"customs-edge-gateway command/1\x00"
EXCERPT_CHARS = 120
"""How much of anything the requester sent is quoted back or logged."""
REPLAY_MEMORY = 10_000
"""Signatures remembered against replay (each until its ``expires``), at most."""


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``value`` as text, cut to ``limit`` characters with the length said."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} chars)"


def signed_bytes(topic: str, response: str, correlation: bytes | None, payload: bytes) -> bytes:
    """What the centre signs for one command."""
    return b"\x00".join(
        (COMMAND_CONTEXT + topic.encode(), response.encode(), correlation or b"", payload)
    )


class CommandGuard:
    """Admission of central's commands (see the module docstring)."""

    def __init__(
        self,
        section: CommandsSection,
        root: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.section = section
        self.reply_prefix = section.reply_prefix or f"{root}/reply/"
        self.central_key = section.central_key()
        self._bucket = TokenBucket(section.rate_per_s, section.burst, clock)
        self._wall = wall
        self._seen: dict[bytes, float] = {}
        self.active = 0

    def reply_topic_refusal(self, response: str | None) -> str | None:
        """Why no reply may go to ``response``; ``None`` if it may."""
        if response is None:
            return "no response topic"
        if not response.startswith(self.reply_prefix) or len(response) == len(self.reply_prefix):
            return f"response topic {excerpt(response)!r} is not under {self.reply_prefix!r}"
        if "+" in response or "#" in response:
            return f"response topic {excerpt(response)!r} has a wildcard"
        return None

    def admit(
        self,
        topic: str,
        payload: bytes,
        response: str,
        correlation: bytes | None,
        properties: dict[str, str],
    ) -> None:
        """Raise :class:`CommandError` if this command may not run now."""
        limit = self.section.max_request_bytes
        if len(payload) > limit:
            raise CommandError(f"request is {len(payload)} bytes; at most {limit}")
        if self.central_key is not None:
            signed = signed_bytes(topic, response, correlation, payload)
            self._check_signature(self.central_key, signed, payload, properties.get("sig"))
        if not self._bucket.take():
            raise CommandError(
                f"too many commands: at most {self.section.rate_per_s:g}/s"
                f" (bursts of {self.section.burst}); ask again later"
            )
        if self.active >= self.section.max_concurrent:
            raise CommandError(
                f"busy: {self.active} commands in progress (at most"
                f" {self.section.max_concurrent}); ask again when one has answered"
            )

    def _check_signature(
        self, key: Ed25519PublicKey, signed: bytes, payload: bytes, sig: str | None
    ) -> None:
        if sig is None:
            raise CommandError("commands must be signed by the centre (user property sig)")
        try:
            signature = base64.b64decode(sig, validate=True)
            key.verify(signature, signed)
        except (binascii.Error, InvalidSignature):
            raise CommandError("the command's signature does not verify") from None
        now = self._wall()
        expires = _expires(payload)
        if expires <= now:
            raise CommandError("the signed command has expired")
        if expires > now + self.section.max_signed_age_s:
            raise CommandError(f"expires is more than {self.section.max_signed_age_s:g} s ahead")
        self._seen = {s: t for s, t in self._seen.items() if t > now}
        if signature in self._seen:
            raise CommandError("this signed command was already received (a replay)")
        if len(self._seen) >= REPLAY_MEMORY:
            raise CommandError("too many signed commands outstanding; ask again later")
        self._seen[signature] = expires


def _expires(payload: bytes) -> float:
    """The ``expires`` of a signed request, as a Unix time."""
    try:
        request = json.loads(payload)
        text = request["expires"]
        when = datetime.fromisoformat(text)
    except (ValueError, KeyError, TypeError):
        raise CommandError("a signed command needs expires (RFC 3339, UTC)") from None
    if when.tzinfo is None:
        raise CommandError("expires needs a time zone (e.g. Z)")
    return when.astimezone(UTC).timestamp()
