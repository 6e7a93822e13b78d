"""Electronic seals and e-locks: alarms that are never dropped, routine reads condensed.

What a gate reader or an e-lock reports becomes:

- ``event/seal_alarm`` (priority ``ALARM``, never evicted): tamper, opened without
  approval, GPS lost, emergency. De-duplicated by (seal id, event, device time) as
  HARDWARE.md asks, so an alert the reader repeats until acknowledged, a frame sent
  twice, or a report re-sent after a reconnect is published once. The key travels in
  the record as ``dedup_key``: after a gateway restart the in-memory memory is gone
  and central can still merge on it. A key is remembered only once its record is
  durable (:meth:`SealProcessor.stored`): a record the outbox refused is drafted
  again from the device's repeat, which the driver acknowledges only after that.
  Without a device time (an e-lock that never had a fix sends zeros) the key cannot
  tell two events apart, so the report's message serial and the gateway's receive
  time stand in: a re-sent report (same serial) within :data:`UNTIMED_REPEAT_S` of
  its last sighting is a repeat, anything else a new alarm. A gate reader's plain
  alert (the Hi-G-Tek manual's record: no event time, no EV#) has neither: it is a
  repeat only while it is its seal's newest stored event, within
  :data:`UNTIMED_REPEAT_S` of its last sighting. The reader repeats its one outstanding
  message until acknowledged and sends another only then, and a seal must be closed
  before it opens again, so any other event of the seal in between (its close burst)
  makes the next opening a new alarm.
- ``event/seal`` (priority ``EVENT``): the other seal events (sealed, closed, opened
  with approval or while a suspended set waits for the wire, low battery),
  de-duplicated the same way. An opening always sets the seal's tampered bit; approved
  open (or a pending suspended set) marks that tampered state as allowed, so it is no
  alarm (Hi-G-Tek UM4710 8.2.1).
- ``reading/{device}/seal`` and ``reading/{device}/position`` (priority
  ``TELEMETRY``): routine reads, sent when something changed (a new seal at the gate,
  its status, battery by 10 %, lock state, alarm flags) and otherwise at most every
  ``seal_interval_s`` per seal or terminal.

Times in records are the device's own (event time, report time); out-of-order times
are kept as they came, since records are evidence; ``received`` is the gateway's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import Field

from drivers.eseal.readings import NoSealInRange, PositionReported, SealAlert, SealRead
from gateway.config import DeviceSection
from gateway.facts import FactBus, SealObserved
from gateway.family import FamilyContext, Processor, basic_runtime
from gateway.readings import Reading, Stamp
from gateway.records import Draft, Outgoing, Priority, rfc3339

ALARM_TOPIC = "event/seal_alarm"
EVENT_TOPIC = "event/seal"

JT808_ALARM_EVENTS: dict[str, str] = {
    "illegal_door_open": "opened",
    "lock_cut": "tampered",
    "gnss_fault": "gps_lost",
    "gnss_antenna_cut": "gps_lost",
    "gnss_antenna_short": "gps_lost",
    "emergency": "emergency",
}
"""JT/T 808 alarm flag -> seal event name (several flags may mean the same event)."""

DEDUP_MEMORY = 4096
"""Keys remembered for de-duplication (a reader repeats for minutes, not days)."""

TERMINAL_MEMORY = 4096
"""Seals and terminals whose last state is remembered (routine-read throttling, raised
alarms); past that the least recently seen is forgotten, so made-up ids cannot grow it.
The JT/T 808 listener admits at most 1024 listed terminals, so none of them is."""

_V = TypeVar("_V")


def _remember(memory: OrderedDict[str, _V], who: str, value: _V) -> None:
    """Set ``memory[who]`` as the most recently seen, forgetting the oldest past the cap."""
    memory[who] = value
    memory.move_to_end(who)
    if len(memory) > TERMINAL_MEMORY:
        memory.popitem(last=False)


UNTIMED_REPEAT_S = 120.0
"""A report without device time repeats a stored one (same terminal, event and message
serial) only within this many seconds of its last sighting: a terminal re-sends an
unanswered report within seconds, while its serial wraps or restarts after a reboot."""


class SealSection(DeviceSection):
    """``[[devices]]`` keys of e-seal readers and e-lock servers (used by the processor)."""

    seal_interval_s: float = Field(
        default=60.0, ge=0, description="routine reads of an unchanged seal at most this often"
    )


@dataclass(frozen=True, slots=True)
class _Key:
    """How one alarm or event is de-duplicated.

    Attributes:
        text: the ``dedup_key`` published in the record.
        memory: what :class:`_Seen` remembers once the record is durable.
        seen_at: the receive time (monotonic) of a key without device time, which
            :class:`_Seen` remembers only for a while; ``None`` for a key with one.
        group: for a key that only its device's newest event may repeat (a reader's
            plain alert: the seal id), else ``None``.
    """

    text: str
    memory: Hashable
    seen_at: float | None
    group: Hashable = None


def _dedup_key(
    seal_id: str,
    event: str,
    when: datetime | None,
    at: Stamp,
    serial: int | None = None,
    *,
    newest_only: bool = False,
) -> _Key:
    """``newest_only``: without device time, a repeat only of the seal's newest event."""
    if when is not None:
        text = f"{seal_id}/{event}/{rfc3339(when)}"
        return _Key(text, text, None)
    text = f"{seal_id}/{event}/received:{rfc3339(at.utc)}/serial:{serial}"
    return _Key(text, (seal_id, event, serial), at.mono, seal_id if newest_only else None)


class _Seen:
    """A bounded memory of the alarms and events already stored.

    A key with a device time is a repeat whenever it comes again; one without is a
    repeat only within ``window_s`` of its last sighting (each repeat extends it). A
    key with a group is forgotten when another key of its group is stored.
    """

    def __init__(self, window_s: float = UNTIMED_REPEAT_S, size: int = DEDUP_MEMORY) -> None:
        self._keys: OrderedDict[Hashable, float | None] = OrderedDict()  # -> last sighting
        self._newest: OrderedDict[Hashable, Hashable] = OrderedDict()  # group -> memory
        self._window_s = window_s
        self._size = size

    def repeat(self, key: _Key) -> bool:
        """Whether ``key``'s alarm or event is already stored."""
        if key.memory not in self._keys:
            return False
        last = self._keys[key.memory]
        if last is not None and key.seen_at is not None:
            if key.seen_at - last > self._window_s:
                return False
            self._keys[key.memory] = key.seen_at
        self._keys.move_to_end(key.memory)
        return True

    def remember(self, key: _Key) -> None:
        """``key``'s record is durable."""
        if key.group is not None:
            older = self._newest.pop(key.group, None)
            if older is not None and older != key.memory:
                self._keys.pop(older, None)  # a newer event: the older one is over
            self._newest[key.group] = key.memory
            if len(self._newest) > self._size:
                self._newest.popitem(last=False)
        self._keys[key.memory] = key.seen_at
        self._keys.move_to_end(key.memory)
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)


def alert_event(alert: SealAlert) -> str:
    """The ``event`` of ``alert``'s record: an opening is named by the state that allows
    it (an opening always sets tampered), other events as the alert names them."""
    if alert.event != "opened":
        return alert.event
    if alert.approved_open:
        return "opened_approved"
    return "opened_for_set" if alert.suspended_set else "opened_without_approval"


def _status(read: SealRead | SealAlert) -> dict[str, bool]:
    return {
        "opened": read.opened,
        "tampered": read.tampered,
        "low_battery": read.low_battery,
        "wire_changed": read.wire_changed,
        "approved_open": read.approved_open,
        "suspended_set": read.suspended_set,
    }


class SealProcessor:
    """Turns seal reads, alerts and e-lock reports into records."""

    def __init__(self, device: str, interval_s: float, *, bus: FactBus | None = None) -> None:
        self.device = device
        self.interval_s = interval_s
        self.bus = bus or FactBus()
        self._seen = _Seen()
        self._last: OrderedDict[str, tuple[tuple[Any, ...], float]] = OrderedDict()  # (state, mono)
        self._alarms: OrderedDict[str, frozenset[str]] = OrderedDict()  # stored raised events
        self._in_range: bool | None = None
        self._unstored: dict[str, tuple[_Key, tuple[str, str] | None]] = {}  # text -> key, raised

    def feed(self, reading: Reading) -> list[Draft]:
        """One decoded message in, the records it calls for out.

        Alarms and events are remembered (for de-duplication and rising edges) only
        when :meth:`stored` says these drafts are durable; drafts of an earlier call
        that never were are forgotten, so the device's repeat drafts them again.
        """
        self._unstored.clear()
        if isinstance(reading, SealAlert):
            drafts = self._alert(reading)
            self._observed(reading.seal_id, reading, str(alert_event(reading)), drafts)
            return drafts
        if isinstance(reading, SealRead):
            drafts = self._read(reading)
            self._observed(
                reading.seal_id, reading, "opened" if reading.opened else "sealed", drafts
            )
            return drafts
        if isinstance(reading, NoSealInRange):
            return self._no_seal(reading)
        if isinstance(reading, PositionReported):
            return self._position(reading)
        return []  # host -> reader echoes on a two-wire bus, other JT/T 808 messages

    def _observed(
        self, seal_id: str, reading: SealRead | SealAlert, state: str, drafts: list[Draft]
    ) -> None:
        fact = SealObserved(
            device=self.device,
            at=reading.at,
            seal_id=seal_id,
            state=state,
            alarm=reading.alarm,
            record_id=drafts[0].id if drafts else None,
        )
        self.bus.publish(fact)

    # -- gate reader -----------------------------------------------------------------------

    def _alert(self, alert: SealAlert) -> list[Draft]:
        event = alert_event(alert)
        key = _dedup_key(alert.seal_id, event, alert.event_time, alert.at, newest_only=True)
        if self._seen.repeat(key):
            return []
        when = alert.event_time
        data: dict[str, Any] = {
            "source": "reader",
            "seal_id": alert.seal_id,
            "event": event,
            "event_time": None if when is None else rfc3339(when),
            "status": _status(alert),
            "reader": alert.reader,
            "sequence": alert.sequence,
            "dedup_key": self._drafted(key),
            "received": rfc3339(alert.at.utc),
        }
        return [self._event(data, when or alert.at.utc, alarm=alert.alarm)]

    def _read(self, read: SealRead) -> list[Draft]:
        drafts: list[Draft] = []
        self._in_range = True
        if read.alarm:  # a latched tamper or an unapproved opening seen in a plain read
            event = "tampered" if read.tampered else "opened_without_approval"
            key = _dedup_key(read.seal_id, event, read.seal_time, read.at)
            if not self._seen.repeat(key):
                data = {
                    "source": "reader",
                    "seal_id": read.seal_id,
                    "event": event,
                    "event_time": None,
                    "status": _status(read),
                    "reader": read.reader,
                    "dedup_key": self._drafted(key),
                    "received": rfc3339(read.at.utc),
                }
                drafts.append(self._event(data, read.at.utc, alarm=True))
        battery_band = None if read.battery_pct is None else read.battery_pct // 10
        state = (tuple(_status(read).values()), battery_band, read.reader_status)
        if self._due(read.seal_id, state, read.at.mono):
            drafts.append(
                self._reading(
                    "seal",
                    "seal_read/1",
                    read.at.utc,
                    {
                        "in_range": True,
                        "seal_id": read.seal_id,
                        "sealed": read.sealed,
                        "status": _status(read),
                        "battery_pct": read.battery_pct,
                        "seal_time": None if read.seal_time is None else rfc3339(read.seal_time),
                        "reader": read.reader,
                        "reader_status": read.reader_status,
                    },
                )
            )
        return drafts

    def _no_seal(self, report: NoSealInRange) -> list[Draft]:
        if self._in_range is False:
            return []
        self._in_range = False
        self._last.clear()  # the next seal at the gate is news, even the same one again
        data = {"in_range": False, "reader": report.reader, "reader_status": report.reader_status}
        return [self._reading("seal", "seal_read/1", report.at.utc, data)]

    # -- JT/T 808 e-locks ------------------------------------------------------------------

    def _position(self, report: PositionReported) -> list[Draft]:
        drafts: list[Draft] = []
        events = frozenset(JT808_ALARM_EVENTS[f] for f in report.alarms if f in JT808_ALARM_EVENTS)
        before = self._alarms.get(report.terminal, frozenset())
        resent = False
        position = {
            "lat": report.lat,
            "lon": report.lon,
            "altitude_m": report.altitude_m,
            "speed_kmh": report.speed_kmh,
            "heading_deg": report.heading_deg,
            "located": report.located,
        }
        locked = "locked" in report.flags
        when = report.device_time or report.at.utc
        for event in sorted(events - before):
            key = _dedup_key(report.terminal, event, report.device_time, report.at, report.serial)
            if self._seen.repeat(key):
                resent = True  # an older report again: its flags are the past
                continue
            data = {
                "source": "jt808",
                "seal_id": report.terminal,
                "event": event,
                "event_time": rfc3339(when) if report.device_time else None,
                "alarms": sorted(report.alarms),
                "locked": locked,
                "position": position,
                "serial": report.serial,
                "dedup_key": self._drafted(key, (report.terminal, event)),
                "received": rfc3339(report.at.utc),
            }
            drafts.append(self._event(data, when, alarm=True))
        # An alarm raised now counts as raised once its record is durable (stored()).
        _remember(self._alarms, report.terminal, before if resent else events & before)
        state = (locked, tuple(sorted(report.flags)), report.located)
        if self._due(report.terminal, state, report.at.mono):
            data = {
                "terminal": report.terminal,
                "locked": locked,
                "door_open": "door_open" in report.flags,
                "flags": sorted(report.flags),
                "alarms": sorted(report.alarms),
                "position": position,
                "device_time": rfc3339(report.device_time) if report.device_time else None,
            }
            drafts.append(self._reading("position", "position/1", when, data))
        return drafts

    # -- shared ------------------------------------------------------------------------------

    def stored(self, drafts: Sequence[Outgoing]) -> None:
        """``drafts``, from the last :meth:`feed`, are durable: remember their alarms."""
        for draft in drafts:
            text = draft.data.get("dedup_key") if isinstance(draft, Draft) else None
            unstored = self._unstored.pop(text, None) if isinstance(text, str) else None
            if unstored is None:
                continue
            key, raised = unstored
            self._seen.remember(key)
            if raised is not None:
                terminal, event = raised
                _remember(self._alarms, terminal, self._alarms.get(terminal, frozenset()) | {event})

    def _drafted(self, key: _Key, raised: tuple[str, str] | None = None) -> str:
        """``key``'s record is drafted, to be remembered once :meth:`stored`; its text.

        ``raised``: the (terminal, alarm event) that counts as raised from then on.
        """
        self._unstored[key.text] = (key, raised)
        return key.text

    def _due(self, who: str, state: tuple[Any, ...], mono: float) -> bool:
        """Whether a routine read of ``who`` is worth sending: news, or the period passed."""
        last = self._last.get(who)
        if last is not None and last[0] == state and mono - last[1] < self.interval_s:
            return False
        _remember(self._last, who, (state, mono))
        return True

    def _event(self, data: dict[str, Any], ts: datetime, *, alarm: bool) -> Draft:
        return Draft(
            topic=ALARM_TOPIC if alarm else EVENT_TOPIC,
            schema="seal_alarm/1" if alarm else "seal_event/1",
            device=self.device,
            ts=ts,
            data=data,
            priority=Priority.ALARM if alarm else Priority.EVENT,
        )

    def _reading(self, kind: str, schema: str, ts: datetime, data: dict[str, Any]) -> Draft:
        return Draft(
            topic=f"reading/{self.device}/{kind}",
            schema=schema,
            device=self.device,
            ts=ts,
            data=data,
            priority=Priority.TELEMETRY,
        )


def _processor(device: DeviceSection, context: FamilyContext) -> Processor:
    assert isinstance(device, SealSection)
    return SealProcessor(device.id, device.seal_interval_s, bus=context.bus)


runtime = basic_runtime(_processor)
"""The e-seal family's runtime (see :class:`gateway.family.FamilyRuntime`)."""
