"""Pre-arrival manifests: what the centre declared before a truck reaches the lane.

The centre pushes them on ``{root}/cmd/manifest`` (MQTT 5 request/response, admitted
like every command by :mod:`gateway.command_guard`):

- ``{"op": "put", "manifests": [...]}`` adds or replaces manifests by ``id``;
- ``{"op": "delete", "ids": [...]}`` removes them;
- ``{"op": "list"}`` answers with the ids held.

A manifest is validated whole (:class:`Manifest`; an error reply names the field, e.g.
``manifests[1].containers[0]: not an ISO 6346 code``) and a request is applied whole or
not at all. They are kept in ``{data_dir}/manifests.json``, replaced atomically and
durably after every change (:class:`gateway.statefile.StateFile`), so they survive
restarts and ``kill -9``; expired ones (``valid_until`` passed) are dropped when the
store is read and on every change. ``gatewayctl manifests`` lists them from the file,
with or without the daemon.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from gateway import iso6346
from gateway.central_commands import FieldRule, Reply, RequestSchema
from gateway.errors import CommandError, ConfigError
from gateway.statefile import StateFile

MANIFEST_COMMAND = "manifest"
FILE_NAME = "manifests.json"
MAX_MANIFESTS = 5000
"""Held at once, at most: a day of a busy lane many times over."""
OPS = ("put", "delete", "list")


def _container_code(code: str) -> str:
    normal = code.replace(" ", "").upper()
    if not iso6346.is_valid(normal):
        raise ValueError(f"{code[:16]!r} is not an ISO 6346 code with its check digit")
    return normal


def _seal_id(seal: str) -> str:
    if not seal.isprintable():
        raise ValueError("a seal id is printable characters")
    return seal


ContainerCode = Annotated[str, AfterValidator(_container_code)]
SealId = Annotated[str, Field(min_length=1, max_length=32), AfterValidator(_seal_id)]


class Manifest(BaseModel):
    """One truck's declaration (validated on arrival; unknown fields refused)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    plate: str = Field(min_length=2, max_length=16)
    trailer_plate: str | None = Field(default=None, min_length=2, max_length=16)
    containers: tuple[ContainerCode, ...] = Field(default=(), max_length=4)
    seals: tuple[SealId, ...] = Field(default=(), max_length=8)
    declared_gross_kg: float | None = Field(default=None, gt=0, le=200_000)
    scan_required: bool
    valid_until: AwareDatetime

    def expired(self, now: datetime) -> bool:
        """Whether ``valid_until`` has passed."""
        return self.valid_until <= now


def _field_error(exc: ValidationError, prefix: str) -> str:
    """The first problem of ``exc`` as ``path: message``."""
    first = exc.errors()[0]
    path = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
    return f"{path}: {first['msg'].removeprefix('Value error, ')}"


class ManifestStore:
    """The manifests held, in ``{data_dir}/manifests.json``."""

    def __init__(self, data_dir: Path, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._file = StateFile(data_dir / FILE_NAME)
        self._clock = clock
        self.manifests: dict[str, Manifest] = {}
        self.load()

    @property
    def path(self) -> Path:
        """Where they are kept."""
        return self._file.path

    def load(self) -> None:
        """Read the file (a damaged one is a config-class error naming it)."""
        raw = self._file.read()
        items: list[Any] = []
        if raw is not None:
            try:
                items = json.loads(raw)["manifests"]
                loaded = [Manifest.model_validate(item) for item in items]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{self.path}: not a manifest file ({exc})") from None
            self.manifests = {m.id: m for m in loaded}
        self._drop_expired()

    def _drop_expired(self) -> list[str]:
        now = self._clock()
        gone = [i for i, m in self.manifests.items() if m.expired(now)]
        for manifest_id in gone:
            del self.manifests[manifest_id]
        return gone

    def _replace(self, manifests: dict[str, Manifest]) -> None:
        """Make ``manifests`` the held ones: durable first, then in memory."""
        now = self._clock()
        kept = {i: m for i, m in manifests.items() if not m.expired(now)}
        body = {"manifests": [m.model_dump(mode="json") for m in kept.values()]}
        self._file.write(json.dumps(body, ensure_ascii=False, indent=1).encode())
        self.manifests = kept

    def put(self, items: list[Any]) -> list[str]:
        """Validate all, then add or replace them; raises ``ValueError`` naming the field."""
        parsed = []
        for n, item in enumerate(items):
            try:
                parsed.append(Manifest.model_validate(item))
            except ValidationError as exc:
                raise ValueError(_field_error(exc, f"manifests[{n}]")) from None
        now = self._clock()
        for n, manifest in enumerate(parsed):
            if manifest.expired(now):
                raise ValueError(f"manifests[{n}].valid_until: already passed")
        merged = {**self.manifests, **{m.id: m for m in parsed}}
        if len(merged) > MAX_MANIFESTS:
            raise ValueError(f"at most {MAX_MANIFESTS} manifests are held; delete some first")
        self._replace(merged)
        return [m.id for m in parsed]

    def delete(self, ids: list[Any]) -> list[str]:
        """Remove those held; returns the ids that were."""
        if not all(isinstance(i, str) for i in ids):
            raise ValueError("ids: a list of manifest ids (strings)")
        removed = [i for i in ids if i in self.manifests]
        self._replace({i: m for i, m in self.manifests.items() if i not in removed})
        return removed

    def current(self) -> list[Manifest]:
        """Those still valid, by id."""
        now = self._clock()
        if any(m.expired(now) for m in self.manifests.values()):
            self._replace(self.manifests)
        return sorted(self.manifests.values(), key=lambda m: m.id)


class ManifestCommand:
    """The ``cmd/manifest`` handler."""

    schema: RequestSchema = MappingProxyType(
        {
            "op": FieldRule(str, required=True, max_chars=8),
            "manifests": FieldRule(list),
            "ids": FieldRule(list),
        }
    )

    def __init__(self, store: ManifestStore) -> None:
        self.store = store

    async def __call__(self, request: dict[str, Any]) -> AsyncIterator[Reply]:
        """One JSON reply: what was done, and how many manifests are held."""
        op = request["op"]
        if op not in OPS:
            raise CommandError(f"op must be one of {list(OPS)}")
        try:
            if op == "put":
                done: dict[str, Any] = {"put": self.store.put(request.get("manifests") or [])}
            elif op == "delete":
                done = {"deleted": self.store.delete(request.get("ids") or [])}
            else:
                done = {"ids": [m.id for m in self.store.current()]}
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        yield Reply.json({"status": "ok", "op": op, **done, "held": len(self.store.manifests)})
