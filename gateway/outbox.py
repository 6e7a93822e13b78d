"""The durable store-and-forward outbox (SQLite, WAL).

Contract:
- a record is committed (fsynced) before the uplink may publish it, and deleted
  only after the broker's PUBACK, so a broker outage, ``kill -9`` or a power cut
  loses nothing that was handed to :meth:`Outbox.append`;
- ``seq`` and the ``prev`` hash chain are assigned in the same transaction as the
  insert and kept in the ``meta`` table, so they continue across restarts with no
  gap and no reuse;
- the payload bytes held are capped; above the cap the lowest priority, oldest
  records go first (telemetry before state before events) and ``ALARM`` records are
  never evicted. What was evicted is counted and reported as an event.

Durability setting: ``journal_mode=WAL`` with ``synchronous=FULL``. In WAL mode
``NORMAL`` survives a process crash but may lose the last commits on power loss,
because the WAL is only synced at checkpoints; ``FULL`` syncs the WAL on every
commit, which is what "a power cut loses nothing" needs. The cost of one fsync per
commit is paid once per *batch*: appends that arrive while a commit is running are
grouped into the next transaction (group commit).

All SQLite work runs on one dedicated thread so fsync never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from gateway.errors import OutboxError, OutboxFullError
from gateway.records import (
    GENESIS,
    Draft,
    MediaDraft,
    Outgoing,
    Priority,
    Record,
    envelope,
)

if TYPE_CHECKING:
    from gateway.signing import RecordSigner

log = structlog.get_logger(__name__)

T = TypeVar("T")

EVICTION_TOPIC = "event/outbox_evicted"
ACK_DELAY_S = 0.05
"""How long acknowledgements gather before their deletion is committed."""
TAIL_BYTES = 32 * 1024 * 1024
"""Cap on the payload bytes the in-memory tail holds (media make records large)."""
TAIL_RECORDS = 16384
"""Newest records kept in memory so the uplink rarely reads the database.

Sized for a burst, not a steady state: when appends outrun the broker by more than
this (20k telemetry records in ~1.5 s in bench/outbox.py), trimming drops exactly
the records the uplink needs next and it falls back to reading SQLite. Costs up to
2 x 16384 x (payload + ~250 B) of memory during such a burst, about 18 MiB."""

RESERVE_BYTES = 8 * 1024 * 1024
"""Disk space held in a pre-allocated file beside the database (``outbox.sqlite3.reserve``).

When SQLite reports a full disk the file is deleted, which gives the WAL room to grow
to its checkpoint size (1000 pages, ~4 MiB) while telemetry is evicted, so alarms and
the eviction reports still fit. A pre-allocated file, not a free-space check: other
writers on the same filesystem (journald, a scanner's drop folder) can take any space
between a check and a write, but not blocks this process holds."""
RESERVE_RETRY_S = 2.0
"""While the disk is full: how often the reserve is tried again (room came back?)."""
RESERVE_HEADROOM = 2 * 1024 * 1024
"""Free space wanted beyond the reserve before the disk counts as having room again."""
WAL_SIZE_LIMIT = 4 * 1024 * 1024
"""``journal_size_limit``: the WAL is cut back to this after a checkpoint."""
SATURATION_HIGH = 20_000
"""Queued records above which, with the broker connected, the gateway counts as saturated.

Past saturation each accepted record costs the producers CPU the uplink needs, and the
delivered rate fell to less than half its maximum (bench/overload.py). Saturated, a
telemetry topic keeps at most one record per :data:`SATURATED_TELEMETRY_S`; the rest is
shed before it costs anything, counted, and reported. Alarms, events, state and media
are never shed. During a broker outage nothing is shed (the cap governs there)."""
SATURATION_LOW = 5_000
"""Queued records below which saturation ends (hysteresis)."""
SATURATED_TELEMETRY_S = 1.0
"""While saturated: at most one telemetry record per topic this often."""
FAILED_COMMIT_RETRY_S = 1.0
"""A commit of acknowledgements only that failed is tried again after this long."""
EVICTION_LOG_S = 60.0
"""Evictions are logged at most this often (with what was dropped since)."""
REPORT_SLACK = 1024
"""Bytes kept free under the cap for the eviction report's growth in one commit."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    pos      INTEGER PRIMARY KEY,
    id       TEXT NOT NULL,
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    priority INTEGER NOT NULL,
    retain   INTEGER NOT NULL
);
-- records.pos is the queue position (publish order, the acknowledgement key);
-- env_seq is the envelope's seq (NULL for media); content_type NULL = JSON record.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
INDEXES = """
CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority, pos);
"""
"""Created after :func:`_migrate`, which an older outbox needs first (the column names)."""


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an outbox written by an older version up to date, in one transaction.

    Each step checks the columns first, so a file already up to date is left alone.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        _rename_position_column(db)
        _add_media_columns(db)
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _columns(db: sqlite3.Connection) -> set[str]:
    return {row[1] for row in db.execute("PRAGMA table_info(records)")}


def _rename_position_column(db: sqlite3.Connection) -> None:
    """The queue position was once a column named ``seq``, the envelope's name for
    something else (``env_seq``); SQLite renames it in the index too."""
    if "seq" in _columns(db):
        db.execute("ALTER TABLE records RENAME COLUMN seq TO pos")


def _add_media_columns(db: sqlite3.Connection) -> None:
    """Bring an outbox from before media support up to date (its rows are JSON).

    Before media every record had a seq and the positions were those seqs.
    """
    if "env_seq" not in _columns(db):
        db.execute("ALTER TABLE records ADD COLUMN content_type TEXT")
        db.execute("ALTER TABLE records ADD COLUMN env_seq INTEGER")
        db.execute("UPDATE records SET env_seq = pos")


def _row(record: Record) -> tuple[int, str, str, bytes, int, int, str | None, int | None]:
    return (
        record.pos,
        record.id,
        record.topic,
        record.payload,
        int(record.priority),
        int(record.retain),
        record.content_type,
        record.seq,
    )


def _is_disk_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc)


MAX_REPORT_RANGES = 256
"""Ranges one eviction report lists at most; beyond, the closest ones are merged.

A merged range may cover a few ``seq`` numbers that were not evicted (they are still
queued, or were sent already). It never leaves an evicted one out, so central can still
tell every announced gap from a loss."""


@dataclass(slots=True)
class Eviction:
    """What was dropped and not yet told to central (merged across commits)."""

    count: int = 0
    bytes: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    ranges: list[list[int]] = field(default_factory=list)
    """Envelope seqs of the evicted records (what central sees as a gap), as ranges."""
    positions: list[int] = field(default_factory=list)
    """Queue positions of everything evicted, media included (this commit only)."""
    media: int = 0
    superseded: list[int] = field(default_factory=list)
    """Seqs of earlier, still queued reports this one replaced (also gaps)."""
    refused: dict[str, int] = field(default_factory=dict)
    """Drafts refused on a full disk per priority (never given a seq: no gap)."""
    shed: dict[str, int] = field(default_factory=dict)
    """Telemetry drafts not stored while saturated, per priority (no seq: no gap)."""

    def __bool__(self) -> bool:
        return bool(self.count or self.superseded or self.refused or self.shed)

    def merge(self, other: Eviction) -> None:
        """Add ``other`` into this one (positions are per commit and are not kept)."""
        self.count += other.count
        self.bytes += other.bytes
        self.media += other.media
        self.ranges = merge_ranges(self.ranges, other.ranges)
        self.superseded += other.superseded
        for mine, theirs in (
            (self.by_priority, other.by_priority),
            (self.refused, other.refused),
            (self.shed, other.shed),
        ):
            for k, v in theirs.items():
                mine[k] = mine.get(k, 0) + v

    def to_json(self) -> str:
        """Kept in the ``meta`` table until a report carries it (survives a crash)."""
        return json.dumps(
            {
                "count": self.count,
                "bytes": self.bytes,
                "by_priority": self.by_priority,
                "seq_ranges": self.ranges,
                "media": self.media,
                "superseded": self.superseded,
                "refused": self.refused,
                "shed": self.shed,
            }
        )

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Eviction:
        """Back from :meth:`to_json` or from a queued report's ``data``."""
        return cls(
            count=int(data.get("count", 0)),
            bytes=int(data.get("bytes", 0)),
            by_priority=dict(data.get("by_priority", {})),
            ranges=[[int(a), int(b)] for a, b in data.get("seq_ranges", [])],
            media=int(data.get("media", 0)),
            superseded=list(data.get("superseded", [])),
            refused=dict(data.get("refused", {})),
            shed=dict(data.get("shed", {})),
        )


@dataclass(slots=True)
class OutboxStats:
    """Counters shown by ``gatewayctl status``."""

    depth: int = 0
    bytes: int = 0
    last_seq: int = 0
    last_pos: int = 0
    appended_total: int = 0
    acked_total: int = 0
    evicted_total: int = 0
    evicted_bytes_total: int = 0
    commits_total: int = 0
    disk_full: bool = False
    """The disk filled and has not had room again since (see :data:`RESERVE_BYTES`)."""
    disk_full_total: int = 0
    refused_total: int = 0
    """Appends refused (disk full, or not serialisable)."""
    reserve_bytes: int = 0
    """Size of the space reserve held on the outbox's filesystem right now."""
    saturated: bool = False
    """More is offered than the uplink delivers: telemetry is thinned (see SATURATION_HIGH)."""
    shed_total: int = 0
    last_error: str | None = None


def seq_ranges(seqs: Sequence[int]) -> list[list[int]]:
    """Compress sequence numbers into sorted, inclusive ``[first, last]`` ranges."""
    return merge_ranges([[s, s] for s in seqs], [])


def merge_ranges(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> list[list[int]]:
    """The union of two range lists, as few ranges as possible, at most
    :data:`MAX_REPORT_RANGES` (the closest neighbours merged first)."""
    ranges: list[list[int]] = []
    for first, last in sorted((int(r[0]), int(r[1])) for r in [*a, *b]):
        if ranges and first <= ranges[-1][1] + 1:
            ranges[-1][1] = max(ranges[-1][1], last)
        else:
            ranges.append([first, last])
    if len(ranges) > MAX_REPORT_RANGES:
        # Close the smallest gaps first, in one pass (ties may close a few more).
        gaps = sorted(ranges[k + 1][0] - ranges[k][1] for k in range(len(ranges) - 1))
        widest_closed = gaps[len(ranges) - MAX_REPORT_RANGES - 1]
        merged = [ranges[0]]
        for first, last in ranges[1:]:
            if first - merged[-1][1] <= widest_closed:
                merged[-1][1] = last
            else:
                merged.append([first, last])
        ranges = merged
    return ranges


def _free_bytes(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def _is_alarm(group: Sequence[Outgoing]) -> bool:
    return any(d.priority >= Priority.ALARM for d in group)


class _Chain:
    """Queue position, ``seq`` and hash chain as a transaction advances them."""

    def __init__(self, pos: int, seq: int, last_hash: str) -> None:
        self.pos, self.seq, self.last_hash = pos, seq, last_hash

    def copy(self) -> _Chain:
        return _Chain(self.pos, self.seq, self.last_hash)

    def restore(self, mark: _Chain) -> None:
        self.pos, self.seq, self.last_hash = mark.pos, mark.seq, mark.last_hash

    def record(
        self, draft: Outgoing, site: str, gateway: str, signer: RecordSigner | None
    ) -> Record:
        """The draft's record at the next place (raises ValueError if not JSON)."""
        if isinstance(draft, MediaDraft):
            self.pos += 1
            return Record(
                pos=self.pos,
                seq=None,
                id=draft.media_id,
                topic=draft.topic,
                payload=draft.body,
                priority=draft.priority,
                retain=False,
                content_type=draft.content_type,
            )
        record_id = draft.id
        payload = envelope(
            draft,
            seq=self.seq + 1,
            record_id=record_id,
            prev=self.last_hash,
            site=site,
            gateway=gateway,
        )
        if signer is not None:
            payload = signer.sign(payload)
        self.pos += 1
        self.seq += 1
        record = Record(
            pos=self.pos,
            seq=self.seq,
            id=record_id,
            topic=draft.topic,
            payload=payload,
            priority=draft.priority,
            retain=draft.retain,
        )
        self.last_hash = record.digest
        return record


@dataclass(slots=True)
class _Commit:
    """What one group commit did."""

    results: list[list[Record] | OutboxError]
    """Per append: its records, or the error that refused it alone."""
    evicted: Eviction = field(default_factory=Eviction)
    """Dropped by this commit (positions: what the in-memory tail must forget)."""
    report: Record | None = None
    """The eviction report written with it (replacing the one still queued)."""


class Outbox:
    """Durable, bounded, prioritised queue of records waiting for the broker."""

    def __init__(
        self,
        path: Path,
        *,
        site: str,
        gateway: str,
        max_bytes: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        reserve_bytes: int = RESERVE_BYTES,
        signer: RecordSigner | None = None,
    ) -> None:
        self.path = path
        self.signer = signer
        """Signs every record's envelope (see :mod:`gateway.signing`); the daemon always
        passes one."""
        self.site = site
        self.gateway = gateway
        self.max_bytes = max_bytes
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.reserve_bytes = reserve_bytes
        self._clock = clock
        self.stats = OutboxStats()
        self.changed = asyncio.Event()
        """Set whenever new records were committed; the uplink clears it."""
        self.on_disk_full: list[Callable[[bool], None]] = []
        """Called with True when the disk fills, False when it has room again."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Sequence[Outgoing], asyncio.Future[list[Record]]]] = []
        self._acked: list[int] = []
        self._deleting: set[int] = set()
        """Acknowledged positions whose deletion is not committed yet (never re-read)."""
        self._ack_timer: asyncio.TimerHandle | None = None
        self._tail: list[Record] = []  # newest committed records, contiguous up to last_pos
        self._tail_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._last_hash = GENESIS
        self._unreported = Eviction()
        """Evicted (or refused) and in no committed report yet; mirrored in ``meta``."""
        self._report_pos: int | None = None
        """Queue position of the eviction report still queued, which the next replaces."""
        self._report_bytes = 0
        self._disk_cap: int | None = None
        """While the disk is full: the bytes the outbox held when it filled (a lower cap)."""
        self._link_up = False
        self._telemetry_at: dict[str, float] = {}
        """While saturated: when each telemetry topic last had a record accepted."""
        self._unlogged = Eviction()
        self._logged_at = -EVICTION_LOG_S
        self._reserve_timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._reserve_check: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        """Open (creating if needed) the database and load counters."""
        await self._run(self._open_sync)
        log.info(
            "outbox opened",
            path=str(self.path),
            depth=self.stats.depth,
            last_seq=self.stats.last_seq,
            bytes=self.stats.bytes,
            reserve_bytes=self.stats.reserve_bytes,
        )
        if self.stats.disk_full:
            self._disk_full_changed()

    async def close(self) -> None:
        """Commit what is pending (appends and acks), then close. Idempotent."""
        for timer in (self._reserve_timer, self._retry_timer):
            if timer is not None:
                timer.cancel()
        self._reserve_timer = self._retry_timer = None
        for task in (self._flusher, self._reserve_check):
            if task is not None:
                # Its errors went to the appends it served; close still flushes the rest.
                await asyncio.gather(asyncio.shield(task), return_exceptions=True)
        if self._ack_timer is not None:
            self._ack_timer.cancel()
            self._ack_timer = None
        if self._acked or self._pending:
            await self._flush()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Outbox:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- public API --------------------------------------------------------------------

    @property
    def disk_full(self) -> bool:
        """The disk filled and has not had room for the reserve again since."""
        return self.stats.disk_full

    async def append(self, drafts: Sequence[Outgoing]) -> list[Record]:
        """Make drafts durable; return them as records once committed.

        The drafts of one call are stored together or not at all; other callers' drafts
        in the same group commit do not depend on them.

        Raises:
            OutboxFullError: the disk left no room for them, even after eviction.
            OutboxError: a draft could not be serialised, or the database failed.
        """
        if not drafts:
            return []
        if self.stats.saturated and self._shed(drafts):
            return []
        future: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        self._pending.append((drafts, future))
        self._kick()
        return await future

    def link(self, up: bool) -> None:
        """The uplink is connected (or not): saturation is only judged while it is."""
        self._link_up = up
        if not up and self.stats.saturated:
            self._saturation(False)

    def _shed(self, drafts: Sequence[Outgoing]) -> bool:
        """Saturated: thin a telemetry append to one per topic per interval (True: shed)."""
        if any(d.priority != Priority.TELEMETRY for d in drafts):
            return False
        now = time.monotonic()
        topic = drafts[0].topic
        if now - self._telemetry_at.get(topic, -SATURATED_TELEMETRY_S) >= SATURATED_TELEMETRY_S:
            self._telemetry_at[topic] = now
            return False
        self.stats.shed_total += len(drafts)
        self._unreported.shed["telemetry"] = self._unreported.shed.get("telemetry", 0) + len(drafts)
        return True

    def _saturation(self, on: bool) -> None:
        self.stats.saturated = on
        if on:
            log.warning(
                "outbox saturated: more offered than the uplink delivers; thinning telemetry",
                depth=self.stats.depth,
                per_topic_s=SATURATED_TELEMETRY_S,
            )
        else:
            self._telemetry_at.clear()
            log.info(
                "outbox no longer saturated", depth=self.stats.depth, shed=self.stats.shed_total
            )

    def ack(self, pos: int) -> None:
        """The broker acknowledged the record at queue position ``pos``: delete it later.

        Deletions are gathered for ``ACK_DELAY_S`` and committed without waiting for
        fsync: losing one in a power cut only means sending that record again, which
        consumers already de-duplicate by ``id``.
        """
        self._acked.append(pos)
        self._deleting.add(pos)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._ack_due)

    def _ack_due(self) -> None:
        self._ack_timer = None
        self._kick()

    async def read_after(self, pos: int, limit: int) -> list[Record]:
        """Records queued after position ``pos``, oldest first.

        Recently committed records are served from memory; older ones (a backlog
        after an outage or a restart) from the database. Records acknowledged but not
        yet deleted are left out.
        """
        tail = self._tail
        if tail and tail[0].pos <= pos + 1:
            start = bisect.bisect_right(tail, pos, key=lambda r: r.pos)
            found = tail[start : start + limit]
        else:
            found = self._records(await self._run(self._read_sync, pos, limit))
        if self._deleting:
            found = [r for r in found if r.pos not in self._deleting]
        return found

    @staticmethod
    def _records(rows: list[tuple[Any, ...]]) -> list[Record]:
        return [
            Record(
                pos=r[0],
                id=r[1],
                topic=r[2],
                payload=r[3],
                priority=Priority(r[4]),
                retain=bool(r[5]),
                content_type=r[6],
                seq=r[7],
            )
            for r in rows
        ]

    # -- group commit ------------------------------------------------------------------

    def _kick(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_loop(), name="outbox-commit"
            )

    async def _flush_loop(self) -> None:
        while self._pending or self._acked:
            if not await self._flush() and not self._pending:
                # Only acknowledgements are left and their commit failed (a full disk):
                # try again later, not in a tight loop.
                self._retry_timer = asyncio.get_running_loop().call_later(
                    FAILED_COMMIT_RETRY_S, self._kick
                )
                return

    async def _flush(self) -> bool:
        """One group commit. Every append in it is answered, whatever happens.

        Returns False if the commit failed as a whole.
        """
        batch, self._pending = self._pending, []
        acked, self._acked = self._acked, []
        was_full = self.stats.disk_full
        try:
            commit = await self._run(self._commit_sync, [drafts for drafts, _ in batch], acked)
        except BaseException as exc:
            self._acked = acked + self._acked  # deleted by the next commit instead
            error = (
                exc
                if isinstance(exc, OutboxError)
                else OutboxError(f"outbox commit failed: {exc!r}")
            )
            self.stats.last_error = str(error)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            if not isinstance(exc, Exception):
                raise
            log.error("outbox commit failed", error=str(error))
            if self.stats.disk_full != was_full:
                self._disk_full_changed()
            return False
        self._deleting.difference_update(acked)
        committed: list[Record] = []
        for (_, fut), result in zip(batch, commit.results, strict=True):
            if isinstance(result, OutboxError):
                self.stats.refused_total += 1
                self.stats.last_error = str(result)
                if not fut.done():
                    fut.set_exception(result)
                continue
            committed += result
            if not fut.done():
                fut.set_result(result)
        eviction = commit.evicted
        if eviction.positions and self._tail:
            gone = set(eviction.positions)
            self._tail = [r for r in self._tail if r.pos not in gone]
            self._tail_bytes = sum(len(r.payload) for r in self._tail)
        if commit.report is not None:
            committed.append(commit.report)
        if committed:
            self._remember(committed)
            self.changed.set()
        if eviction.count:
            self._log_eviction(eviction)
        if self.stats.disk_full != was_full:
            self._disk_full_changed()
        depth = self.stats.depth
        if not self.stats.saturated and self._link_up and depth > SATURATION_HIGH:
            self._saturation(True)
        elif self.stats.saturated and depth < SATURATION_LOW:
            self._saturation(False)
        return True

    def _log_eviction(self, eviction: Eviction) -> None:
        """One warning per :data:`EVICTION_LOG_S` with what was dropped since the last."""
        self._unlogged.merge(eviction)
        now = time.monotonic()
        if now - self._logged_at < EVICTION_LOG_S:
            return
        ev, self._unlogged, self._logged_at = self._unlogged, Eviction(), now
        log.warning(
            "outbox over its cap: evicted low-priority records",
            count=ev.count,
            bytes=ev.bytes,
            by_priority=ev.by_priority,
            max_bytes=self.max_bytes,
            disk_full=self.stats.disk_full,
        )

    def _remember(self, records: list[Record]) -> None:
        """Keep the newest committed records in memory for the uplink."""
        self._tail.extend(records)
        self._tail_bytes += sum(len(r.payload) for r in records)
        if len(self._tail) > 2 * TAIL_RECORDS or self._tail_bytes > 2 * TAIL_BYTES:
            keep, size = 0, 0
            for record in reversed(self._tail):
                if keep >= TAIL_RECORDS or size + len(record.payload) > TAIL_BYTES:
                    break
                keep += 1
                size += len(record.payload)
            del self._tail[: len(self._tail) - keep]
            self._tail_bytes = size

    # -- a full disk -------------------------------------------------------------------

    def _disk_full_changed(self) -> None:
        full = self.stats.disk_full
        if full:
            log.error(
                "disk full: outbox keeps alarms and events, evicts telemetry first",
                path=str(self.path),
                free_bytes=_free_bytes(self.path.parent),
            )
            self._schedule_reserve_check()
        else:
            log.info("disk has room again: outbox back to normal", path=str(self.path))
        for callback in self.on_disk_full:
            callback(full)

    def _schedule_reserve_check(self) -> None:
        if self._reserve_timer is None:
            self._reserve_timer = asyncio.get_running_loop().call_later(
                RESERVE_RETRY_S, self._reserve_due
            )

    def _reserve_due(self) -> None:
        self._reserve_timer = None
        if self._reserve_check is None or self._reserve_check.done():
            self._reserve_check = asyncio.get_running_loop().create_task(
                self._check_reserve(), name="outbox-reserve"
            )

    async def _check_reserve(self) -> None:
        """While the disk is full: try to take the reserve back; done when it fits."""
        if self._db is None or not self.stats.disk_full:
            return
        if await self._run(self._restore_reserve_sync):
            self._disk_full_changed()
        else:
            self._schedule_reserve_check()

    def _restore_reserve_sync(self) -> bool:
        if _free_bytes(self.path.parent) < self.reserve_bytes + RESERVE_HEADROOM:
            return False
        if not self._allocate_reserve():
            return False
        self.stats.disk_full = False
        self._disk_cap = None
        return True

    def _allocate_reserve(self) -> bool:
        """Hold ``reserve_bytes`` of real blocks in a file beside the database."""
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.warning("cannot allocate the outbox space reserve", error=str(exc))
            self.reserve_path.unlink(missing_ok=True)
            self.stats.reserve_bytes = 0
            return False
        self.stats.reserve_bytes = self.reserve_bytes
        return True

    def _release_reserve(self) -> None:
        self.reserve_path.unlink(missing_ok=True)
        self.stats.reserve_bytes = 0

    # -- the SQLite thread -------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _open_sync(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            # After a checkpoint the WAL is cut back to this size, so space freed by a
            # burst is returned to the filesystem instead of held by the file.
            db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            db.executescript(SCHEMA)
            _migrate(db)
            db.executescript(INDEXES)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self.stats.last_seq = int(meta.get("last_seq", "0"))
        # Outboxes written before media existed have no last_pos: positions were seqs.
        self.stats.last_pos = int(meta.get("last_pos") or self.stats.last_seq)
        self._last_hash = meta.get("last_hash", GENESIS)
        if meta.get("unreported"):
            self._unreported = Eviction.from_data(json.loads(meta["unreported"]))
        if meta.get("report_pos"):
            self._report_pos = int(meta["report_pos"])
        depth, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)),0) FROM records"
        ).fetchone()
        self.stats.depth, self.stats.bytes = depth, size
        self._db = db
        if not self._allocate_reserve():
            self.stats.disk_full = True
            self._disk_cap = size

    def _read_sync(self, pos: int, limit: int) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(
            "SELECT pos, id, topic, payload, priority, retain, content_type, env_seq"
            " FROM records WHERE pos > ? ORDER BY pos LIMIT ?",
            (pos, limit),
        ).fetchall()

    def _commit_sync(self, groups: list[Sequence[Outgoing]], acked: list[int]) -> _Commit:
        """One transaction for every group; on a full disk, make room and try again.

        Returns, per group, its records or the error that refused it alone.
        """
        if not any(groups):
            try:
                return self._delete_only(groups, acked)
            except sqlite3.Error as exc:
                if not _is_disk_full(exc):
                    raise OutboxError(f"outbox delete failed: {exc}") from exc
            self._enter_disk_full()  # the WAL needs room even to delete
            try:
                return self._delete_only(groups, acked)
            except sqlite3.Error as exc:
                raise OutboxFullError(
                    f"disk full: cannot delete acknowledged records: {exc}"
                ) from exc
        try:
            return self._guarded(groups, acked)
        except sqlite3.Error as exc:
            if not _is_disk_full(exc):
                raise OutboxError(f"outbox write failed: {exc}") from exc
        made_room = Eviction()
        if self._enter_disk_full():
            try:  # the released reserve may be room enough
                return self._guarded(groups, acked)
            except sqlite3.Error as exc:
                if not _is_disk_full(exc):
                    raise OutboxError(f"outbox write failed: {exc}") from exc
        # Make room by a quarter of what is queued each time (lowest priority, oldest
        # first, never alarms), and from now on hold at most what fits.
        for _ in range(3):
            try:
                freed = self._evict_sync(target=self.stats.bytes * 3 // 4)
                made_room.merge(freed)
                made_room.positions += freed.positions
                self._disk_cap = min(self._disk_cap or self.stats.bytes, self.stats.bytes)
                return self._with_room(self._guarded(groups, acked), made_room)
            except sqlite3.Error as exc:
                if not _is_disk_full(exc):
                    raise OutboxError(f"outbox write failed: {exc}") from exc
        # No room left for everything: alarms alone, the rest refused (and counted).
        refused = OutboxFullError(f"disk full: {self.path.parent} has no room for this record")
        alarms = [g if _is_alarm(g) else [] for g in groups]
        for group in groups:
            if not _is_alarm(group):
                for draft in group:
                    name = Priority(draft.priority).name.lower()
                    self._unreported.refused[name] = self._unreported.refused.get(name, 0) + 1
        try:
            commit = self._guarded(alarms, acked)
        except sqlite3.Error as exc:
            raise OutboxFullError(
                f"disk full: cannot store {sum(map(len, groups))} record(s) in {self.path}"
            ) from exc
        commit.results = [
            result if _is_alarm(group) else refused
            for group, result in zip(groups, commit.results, strict=True)
        ]
        return self._with_room(commit, made_room)

    def _enter_disk_full(self) -> bool:
        """The disk is full: release the reserve (True if this is news).

        From now on the outbox holds at most what it holds now plus a quarter of the
        reserve; the rest of the reserve is the WAL's room to grow until a checkpoint.
        """
        if self.stats.disk_full:
            return False
        self.stats.disk_full = True
        self.stats.disk_full_total += 1
        self._release_reserve()
        self._disk_cap = self.stats.bytes + self.reserve_bytes // 4
        return True

    @staticmethod
    def _with_room(commit: _Commit, made_room: Eviction) -> _Commit:
        """Add what was evicted beforehand to make room (for the log and the tail)."""
        positions = made_room.positions + commit.evicted.positions
        commit.evicted.merge(made_room)
        commit.evicted.positions = positions
        return commit

    def _guarded(self, groups: list[Sequence[Outgoing]], acked: list[int]) -> _Commit:
        """:meth:`_transaction`, rolled back on any error (the caller decides)."""
        try:
            return self._transaction(groups, acked)
        except BaseException:
            self._db_rollback()
            raise

    def _delete_only(self, groups: list[Sequence[Outgoing]], acked: list[int]) -> _Commit:
        """A commit of deletions only: no fsync (the next FULL commit syncs it anyway)."""
        db = self._db
        assert db is not None
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._guarded(groups, acked)
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _db_rollback(self) -> None:
        assert self._db is not None
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _transaction(self, groups: list[Sequence[Outgoing]], acked: list[int]) -> _Commit:
        db = self._db
        assert db is not None
        chain = _Chain(self.stats.last_pos, self.stats.last_seq, self._last_hash)
        db.execute("BEGIN IMMEDIATE")
        deleted, freed_bytes = self._delete_acked(acked)
        # Central has the queued report if it was acknowledged: the next starts afresh.
        # Kept local until COMMIT, so a rollback leaves the outbox's state as it was.
        queued = None if self._report_pos in acked else self._report_pos
        report_bytes = self._report_bytes if queued is not None else 0
        results: list[list[Record] | OutboxError] = []
        records: list[Record] = []
        for group in groups:
            result = self._serialise(group, chain)
            results.append(result)
            if not isinstance(result, OutboxError):
                records += result
        if records:
            # One statement for the batch: per-row execute() was ~15% of this method.
            db.executemany(
                "INSERT INTO records"
                " (pos, id, topic, payload, priority, retain, content_type, env_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [_row(r) for r in records],
            )
        size = self.stats.bytes + sum(len(r.payload) for r in records) - freed_bytes
        cap = self.max_bytes if self._disk_cap is None else min(self.max_bytes, self._disk_cap)
        eviction = Eviction()
        if records and size > cap - report_bytes:
            # Room for the report too: the cap holds with it, within one commit.
            eviction = self._evict_rows(size, target=cap - report_bytes - REPORT_SLACK)
        size -= eviction.bytes
        unreported = Eviction()
        unreported.merge(self._unreported)
        unreported.merge(eviction)
        report: Record | None = None
        report_gone = 0
        if unreported and (records or eviction):
            report, report_gone = self._replace_report(unreported, chain, queued)
            size += len(report.payload) - report_gone
        if records or report is not None:
            meta = [("last_seq", str(chain.seq)), ("last_pos", str(chain.pos))]
            meta += [("last_hash", chain.last_hash)]
            if report is not None:
                meta += [("unreported", ""), ("report_pos", str(report.pos))]
            db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta)
        db.execute("COMMIT")
        if report is not None:
            records.append(report)
            self._unreported = Eviction()
            if report_gone and queued is not None:
                eviction.positions.append(queued)  # replaced: forget it
            self._report_pos, self._report_bytes = report.pos, len(report.payload)
        elif queued is None:
            self._report_pos, self._report_bytes = None, 0
        self._account(size, chain, added=len(records), deleted=deleted, evicted=eviction)
        if report_gone:
            self.stats.depth -= 1
        return _Commit(results, eviction, report)

    def _account(
        self, size: int, chain: _Chain, *, added: int, deleted: int, evicted: Eviction
    ) -> None:
        """A transaction committed: counters and the chain's head follow it."""
        stats = self.stats
        stats.bytes = size
        stats.depth += added - deleted - evicted.count
        stats.evicted_total += evicted.count
        stats.evicted_bytes_total += evicted.bytes
        stats.last_seq, stats.last_pos = chain.seq, chain.pos
        self._last_hash = chain.last_hash
        stats.appended_total += added
        stats.acked_total += deleted
        stats.commits_total += 1

    def _delete_acked(self, acked: list[int]) -> tuple[int, int]:
        """Delete acknowledged records (inside the transaction): how many, how many bytes."""
        if not acked:
            return 0, 0
        assert self._db is not None
        rows = self._db.execute(
            f"DELETE FROM records WHERE pos IN ({','.join('?' * len(acked))})"  # noqa: S608 - placeholders only
            " RETURNING pos, LENGTH(payload)",
            acked,
        ).fetchall()
        return len(rows), sum(r[1] for r in rows)

    def _serialise(self, group: Sequence[Outgoing], chain: _Chain) -> list[Record] | OutboxError:
        """One append's drafts as records, or the error refusing that append alone."""
        mark = chain.copy()
        out: list[Record] = []
        try:
            for draft in group:
                out.append(chain.record(draft, self.site, self.gateway, self.signer))
        except (ValueError, TypeError) as exc:  # not JSON: NaN, bytes, an object...
            chain.restore(mark)
            return OutboxError(f"a record could not be serialised, refused: {exc}")
        return out

    def _replace_report(
        self, ev: Eviction, chain: _Chain, queued: int | None
    ) -> tuple[Record, int]:
        """Write one eviction report, replacing the one still queued at position
        ``queued`` (merged into it).

        Returns the new report and the payload bytes of the one it replaced (0 if none).
        """
        db = self._db
        assert db is not None
        gone = 0
        if queued is not None:
            row = db.execute(
                "DELETE FROM records WHERE pos = ? RETURNING env_seq, payload", (queued,)
            ).fetchone()
            if row is not None:
                old = Eviction.from_data(json.loads(row[1])["data"])
                old.superseded.append(int(row[0]))
                old.merge(ev)
                ev = old
                gone = len(row[1])
        draft = Draft(
            topic=EVICTION_TOPIC,
            schema="outbox_evicted/1",
            device=None,
            ts=self._clock(),
            data={
                "count": ev.count,
                "bytes": ev.bytes,
                "by_priority": ev.by_priority,
                "seq_ranges": merge_ranges(ev.ranges, [[s, s] for s in ev.superseded]),
                "media": ev.media,
                "superseded": sorted(ev.superseded)[-MAX_REPORT_RANGES:],
                "refused": ev.refused,
                "shed": ev.shed,
                "disk_full": self.stats.disk_full,
                "max_bytes": self.max_bytes,
            },
            # Never evicted: it is what lets central tell a gap from a loss.
            priority=Priority.ALARM,
        )
        record = chain.record(draft, self.site, self.gateway, self.signer)
        db.execute(
            "INSERT INTO records"
            " (pos, id, topic, payload, priority, retain, content_type, env_seq)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            _row(record),
        )
        return record, gone

    def _evict_sync(self, *, target: int) -> Eviction:
        """Evict in a transaction of its own (disk full: make room before retrying).

        What it dropped is written to ``meta`` in the same transaction, so a report
        follows even if the process dies before the next commit.
        """
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            ev = self._evict_rows(self.stats.bytes, target=target)
            merged = Eviction()
            merged.merge(self._unreported)
            merged.merge(ev)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('unreported', ?)",
                (merged.to_json(),),
            )
            db.execute("COMMIT")
        except BaseException:
            self._db_rollback()
            raise
        self._unreported = merged
        self.stats.bytes -= ev.bytes
        self.stats.depth -= ev.count
        self.stats.evicted_total += ev.count
        self.stats.evicted_bytes_total += ev.bytes
        return ev

    def _evict_rows(self, size: int, *, target: int) -> Eviction:
        """Delete lowest-priority, oldest records until at most ``target`` bytes remain.

        Alarms (and the eviction report) are never deleted.
        """
        db = self._db
        assert db is not None
        ev = Eviction()
        rows = db.execute(
            "SELECT pos, env_seq, priority, LENGTH(payload) FROM records WHERE priority < ?"
            " ORDER BY priority, pos",
            (int(Priority.ALARM),),
        )
        for pos, env_seq, priority, length in rows.fetchall():
            if size - ev.bytes <= target:
                break
            ev.positions.append(pos)
            if env_seq is None:
                ev.media += 1
            else:
                ev.ranges.append([env_seq, env_seq])
            ev.bytes += length
            name = Priority(priority).name.lower()
            ev.by_priority[name] = ev.by_priority.get(name, 0) + 1
        if ev.positions:
            db.executemany("DELETE FROM records WHERE pos = ?", [(p,) for p in ev.positions])
        ev.count = len(ev.positions)
        ev.ranges = merge_ranges(ev.ranges, [])
        return ev
