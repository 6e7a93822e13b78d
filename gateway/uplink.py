"""The MQTT uplink: drains the outbox to the central broker, QoS 1, in order.

paho-mqtt 2.x runs its network loop on its own thread (``loop_start``), which also
reconnects with capped exponential backoff. Its callbacks only hand events to the
asyncio loop (``call_soon_threadsafe``); all uplink state lives on the event loop.

- at most ``inflight`` records are unacknowledged at once; a record is removed from
  the outbox only when its PUBACK arrives with a success reason code;
- paho keeps unacknowledged QoS 1 messages across a reconnect and sends them again
  (DUP set), so nothing is skipped; consumers de-duplicate by record ``id``;
- ``{root}/status`` carries ``online`` (retained) after every connect and ``offline``
  as the Last Will and on orderly shutdown;
- TLS, when configured, always verifies the server certificate and host name; there
  is no fallback to plaintext.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import structlog
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands import REPLY_WINDOW, Handler, Reply, error_reply, parse_request
from gateway.config import GatewayConfig
from gateway.errors import CommandError, ConfigError, GatewayError
from gateway.outbox import Outbox
from gateway.records import Record, rfc3339

log = structlog.get_logger(__name__)


class UplinkStats:
    """What ``gatewayctl status`` shows about the link."""

    def __init__(self) -> None:
        self.connected = False
        self.since: str | None = None
        self.connects_total = 0
        self.disconnects_total = 0
        self.published_total = 0
        self.acked_total = 0
        self.commands_total = 0
        self.commands_failed = 0
        self.rejected_total = 0
        self.last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly view."""
        return dict(vars(self))


def _status_payload(state: str, config: GatewayConfig) -> bytes:
    return json.dumps(
        {
            "schema": "status/1",
            "state": state,
            "ts": rfc3339(datetime.now(UTC)),
            "site": config.gateway.site,
            "gateway": config.gateway.id,
        },
        separators=(",", ":"),
    ).encode()


class _FixedProperties(Properties):
    """Properties that never change, encoded once instead of at every publish.

    paho re-encodes a message's properties on each publish; for the one fixed
    content type every record carries that was ~15% of the uplink's CPU time
    (measured with bench/outbox.py under cProfile).
    """

    def pack(self) -> bytes:
        packed: bytes | None = self.__dict__.get("_packed")
        if packed is None:
            packed = bytes(super().pack())  # type: ignore[no-untyped-call]
            object.__setattr__(self, "_packed", packed)  # Properties.__setattr__ is strict
        return packed


def _json_properties(packet: int = PacketTypes.PUBLISH) -> Properties:
    return _content_properties("application/json", packet)


def _content_properties(content_type: str, packet: int = PacketTypes.PUBLISH) -> Properties:
    props = _FixedProperties(packet)  # type: ignore[no-untyped-call]
    props.ContentType = content_type
    return props


def build_client(config: GatewayConfig) -> mqtt.Client:
    """A configured (not yet connected) paho client: MQTT 5, Last Will, TLS, credentials."""
    cfg = config.mqtt
    client_id = cfg.client_id or f"edge-gateway-{config.gateway.site}-{config.gateway.id}"
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(cfg.inflight)
    # Full jitter on the first delay keeps a fleet from reconnecting in lockstep.
    first = random.uniform(cfg.reconnect_min_s, 2 * cfg.reconnect_min_s)
    client.reconnect_delay_set(min_delay=max(1, round(first)), max_delay=int(cfg.reconnect_max_s))
    client.will_set(
        f"{config.gateway.root}/status",
        _status_payload("offline", config),
        qos=1,
        retain=True,
        properties=_json_properties(PacketTypes.WILLMESSAGE),
    )
    if cfg.username is not None:
        password = None
        if cfg.password_file is not None:
            try:
                password = cfg.password_file.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise ConfigError(
                    f"mqtt.password_file: cannot read {cfg.password_file}: {exc}"
                ) from exc
        client.username_pw_set(cfg.username, password)
    if cfg.tls_ca is not None:
        try:
            client.tls_set(
                ca_certs=str(cfg.tls_ca),
                certfile=str(cfg.tls_cert) if cfg.tls_cert else None,
                keyfile=str(cfg.tls_key) if cfg.tls_key else None,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"mqtt TLS files unusable (tls_ca/tls_cert/tls_key): {exc}") from exc
        client.tls_insecure_set(False)
    return client


class Uplink:
    """Publishes outbox records in queue order with a bounded in-flight window."""

    def __init__(self, config: GatewayConfig, outbox: Outbox) -> None:
        self.config = config
        self.outbox = outbox
        self.root = config.gateway.root
        self.stats = UplinkStats()
        self.on_acked: list[Callable[[Record], None]] = []
        """Called with every record the broker acknowledged (``gatewayctl tail``)."""
        self.commands: dict[str, Handler] = {}
        """Command name -> handler; ``{root}/cmd/+`` is subscribed when there is one."""
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._reply_acks: dict[int, asyncio.Future[bool]] = {}
        self._client = build_client(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._window_open = asyncio.Event()
        self._inflight: dict[int, Record] = {}
        self._cursor = 0
        self._task: asyncio.Task[None] | None = None
        self._status_mid: int | None = None
        self._offline_acked = asyncio.Event()
        self._closing = False
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._refused = False
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._acks: list[tuple[int, bool, str]] = []
        self._acks_lock = threading.Lock()
        self._acks_scheduled = False

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Uplink:
        self._loop = asyncio.get_running_loop()
        cfg = self.config.mqtt
        self._client.connect_async(cfg.host, cfg.port, keepalive=cfg.keepalive)
        self._client.loop_start()
        self._task = self._loop.create_task(self._publish_loop(), name="uplink-publish")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._command_tasks):
            task.cancel()
        await asyncio.gather(*self._command_tasks, return_exceptions=True)
        if self._connected.is_set():
            info = self._client.publish(
                f"{self.root}/status",
                _status_payload("offline", self.config),
                qos=1,
                retain=True,
                properties=_json_properties(),
            )
            self._status_mid = info.mid
            try:
                async with asyncio.timeout(3):
                    await self._offline_acked.wait()
            except TimeoutError:
                log.warning("broker did not acknowledge 'offline' in time")
        self._closing = True
        await asyncio.to_thread(self._shutdown_client)

    def _shutdown_client(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    async def drained(self, timeout_s: float) -> bool:
        """Wait until every committed record was acknowledged (or timeout); True if so."""
        try:
            async with asyncio.timeout(timeout_s):
                while self._inflight or self._cursor < self.outbox.stats.last_pos:
                    if not self._connected.is_set():
                        return False
                    self._window_open.clear()
                    await self._window_open.wait()
        except TimeoutError:
            return False
        return True

    @property
    def inflight(self) -> int:
        """Records handed to the broker and not yet acknowledged."""
        return len(self._inflight)

    # -- publishing (event loop) -------------------------------------------------------

    async def _publish_loop(self) -> None:
        window = self.config.mqtt.inflight
        json_props = _json_properties()
        media_props: dict[str, Properties] = {}
        while True:
            await self._connected.wait()
            if len(self._inflight) >= window:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            self.outbox.changed.clear()
            batch = await self.outbox.read_after(self._cursor, window - len(self._inflight))
            if not batch:
                await self.outbox.changed.wait()
                continue
            for record in batch:
                if not self._connected.is_set():
                    break
                props = json_props
                if record.content_type is not None:
                    props = media_props.get(record.content_type) or media_props.setdefault(
                        record.content_type, _content_properties(record.content_type)
                    )
                info = self._client.publish(
                    f"{self.root}/{record.topic}",
                    record.payload,
                    qos=1,
                    retain=record.retain,
                    properties=props,
                )
                self._inflight[info.mid] = record
                self._cursor = record.pos
                self.stats.published_total += 1

    # -- paho callbacks (paho's thread) -> event loop ----------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self._call(self._refuse, f"broker refused connection: {reason}")
            return
        client.publish(
            f"{self.root}/status",
            _status_payload("online", self.config),
            qos=1,
            retain=True,
            properties=_json_properties(),
        )
        if self.commands:
            client.subscribe(f"{self.root}/cmd/+", qos=1)
        self._call(self._up)

    def _on_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        # paho passes no exception, but calls this inside its ``except OSError`` block.
        exc = sys.exc_info()[1]
        cfg = self.config.mqtt
        detail = f": {exc}" if exc is not None else ""
        self._call(self._failed, f"cannot connect to {cfg.host}:{cfg.port}{detail}")

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        self._call(self._down, str(reason))

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        # PUBACKs arrive in bursts: hand them over in batches, one loop wake-up per batch.
        with self._acks_lock:
            failed = reason.is_failure
            self._acks.append((mid, failed, str(reason) if failed else ""))
            if self._acks_scheduled:
                return
            self._acks_scheduled = True
        self._call(self._drain_acks)

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        props = msg.properties
        response = getattr(props, "ResponseTopic", None) if props else None
        correlation = getattr(props, "CorrelationData", None) if props else None
        name = msg.topic.rsplit("/", 1)[-1]
        self._call(self._command, name, bytes(msg.payload), response, correlation)

    def _drain_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks = self._acks, []
            self._acks_scheduled = False
        for mid, failed, reason in acks:
            self._acked(mid, failed, reason)
        self._window_open.set()

    # -- state changes (event loop) ----------------------------------------------------

    def _up(self) -> None:
        self.stats.connects_total += 1
        if self.stats.connects_total > 1:
            log.info(
                "uplink reconnected",
                host=self.config.mqtt.host,
                down_since=self.stats.since,
                pending=self.outbox.stats.depth,
            )
        else:
            log.info("uplink connected", host=self.config.mqtt.host, port=self.config.mqtt.port)
        self.stats.connected = True
        self.stats.since = rfc3339(datetime.now(UTC))
        self.stats.last_error = None
        self._connected.set()

    def _down(self, reason: str) -> None:
        if self._refused:  # paho follows a refused CONNACK with a disconnect ('Protocol error')
            self._refused = False
            reason = self.stats.last_error or reason
        if self.stats.connected and not self._closing:
            self.stats.disconnects_total += 1
            log.warning(
                "uplink lost; records stay in the outbox until it returns",
                reason=reason,
                inflight=len(self._inflight),
            )
            self.stats.since = rfc3339(datetime.now(UTC))
        self.stats.connected = False
        self.stats.last_error = reason
        self._connected.clear()
        self._window_open.set()

    def _failed(self, reason: str) -> None:
        if self.stats.last_error != reason:
            log.error("uplink connection refused", reason=reason)
        self._down(reason)

    def _refuse(self, reason: str) -> None:
        self._failed(reason)
        self._refused = True

    def _acked(self, mid: int, failed: bool, reason: str) -> None:
        """One PUBACK; the caller opens the window once for its whole batch."""
        if mid == self._status_mid:
            self._offline_acked.set()
        reply = self._reply_acks.pop(mid, None)
        if reply is not None:
            if not reply.done():
                reply.set_result(not failed)
            return
        record = self._inflight.pop(mid, None)
        if record is None:
            return
        if failed:
            # Kept in the outbox: it is sent again after the next restart.
            self.stats.rejected_total += 1
            self.stats.last_error = f"broker rejected {record.topic} (seq {record.seq}): {reason}"
            log.error("broker rejected a record", seq=record.seq, topic=record.topic, reason=reason)
            return
        self.stats.acked_total += 1
        self.outbox.ack(record.pos)
        for callback in self.on_acked:
            callback(record)

    # -- commands (event loop) -------------------------------------------------------------

    def _command(
        self, name: str, payload: bytes, response: str | None, correlation: bytes | None
    ) -> None:
        self.stats.commands_total += 1
        if response is None:
            self.stats.commands_failed += 1
            log.warning("command without a response topic ignored", command=name)
            return
        task = asyncio.get_running_loop().create_task(
            self._answer(name, payload, response, correlation), name=f"cmd-{name}"
        )
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _answer(
        self, name: str, payload: bytes, response: str, correlation: bytes | None
    ) -> None:
        handler = self.commands.get(name)
        part = 0  # parts already sent; an error reply continues the numbering
        try:
            if handler is None:
                raise CommandError(f"unknown command {name!r}; known: {sorted(self.commands)}")
            try:
                request = parse_request(payload)
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            log.info("command", command=name, request=request)
            pending: list[asyncio.Future[bool]] = []
            held: Reply | None = None  # sent when the next arrives: the last is marked so
            async for reply in handler(request):
                if held is not None:
                    pending.append(self._reply(response, correlation, held, part, last=False))
                    part += 1
                held = reply
                if len(pending) >= REPLY_WINDOW and not await pending.pop(0):
                    raise CommandError("the broker refused a reply part")
            if held is None:
                raise CommandError(f"command {name!r} gave no answer")
        except (GatewayError, OSError) as exc:
            self.stats.commands_failed += 1
            log.warning("command failed", command=name, error=str(exc))
            # Parts sent before the error stand; the one held back is replaced by the error.
            self._reply(response, correlation, error_reply(str(exc)), part, last=True)
            return
        self._reply(response, correlation, held, part, last=True)
        await asyncio.gather(*pending)

    def _reply(
        self, topic: str, correlation: bytes | None, reply: Reply, part: int, *, last: bool
    ) -> asyncio.Future[bool]:
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = reply.content_type
        if correlation is not None:
            props.CorrelationData = correlation
        props.UserProperty = [("part", str(part)), ("last", "true" if last else "false")]
        info = self._client.publish(topic, reply.body, qos=1, properties=props)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._reply_acks[info.mid] = future
        return future
