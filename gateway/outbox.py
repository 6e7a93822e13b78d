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
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

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
    uuid7,
)

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq      INTEGER PRIMARY KEY,
    id       TEXT NOT NULL,
    topic    TEXT NOT NULL,
    payload  BLOB NOT NULL,
    priority INTEGER NOT NULL,
    retain   INTEGER NOT NULL
);
-- records.seq is the queue position (publish order, the acknowledgement key);
-- env_seq is the envelope's seq (NULL for media); content_type NULL = JSON record.
CREATE INDEX IF NOT EXISTS records_by_priority ON records (priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _add_media_columns(db: sqlite3.Connection) -> None:
    """Bring an outbox from before media support up to date (its rows are JSON)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    if "env_seq" not in columns:
        db.execute("ALTER TABLE records ADD COLUMN content_type TEXT")
        db.execute("ALTER TABLE records ADD COLUMN env_seq INTEGER")
        db.execute("UPDATE records SET env_seq = seq")


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


@dataclass(slots=True)
class Eviction:
    """What one commit had to drop to stay under the cap."""

    count: int = 0
    bytes: int = 0
    by_priority: dict[str, int] = field(default_factory=dict)
    seqs: list[int] = field(default_factory=list)
    """Envelope seqs of the evicted records (what central sees as a gap)."""
    positions: list[int] = field(default_factory=list)
    """Queue positions of everything evicted, media included."""
    media: int = 0


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
    disk_full_total: int = 0
    last_error: str | None = None


def seq_ranges(seqs: Sequence[int]) -> list[list[int]]:
    """Compress sorted sequence numbers into inclusive ``[first, last]`` ranges."""
    ranges: list[list[int]] = []
    for s in sorted(seqs):
        if ranges and s == ranges[-1][1] + 1:
            ranges[-1][1] = s
        else:
            ranges.append([s, s])
    return ranges


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
    ) -> None:
        self.path = path
        self.site = site
        self.gateway = gateway
        self.max_bytes = max_bytes
        self._clock = clock
        self.stats = OutboxStats()
        self.changed = asyncio.Event()
        """Set whenever new records were committed; the uplink clears it."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        self._db: sqlite3.Connection | None = None
        self._pending: list[tuple[Sequence[Outgoing], asyncio.Future[list[Record]]]] = []
        self._acked: list[int] = []
        self._ack_timer: asyncio.TimerHandle | None = None
        self._tail: list[Record] = []  # newest committed records, contiguous up to last_pos
        self._tail_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._last_hash = GENESIS

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
        )

    async def close(self) -> None:
        """Commit what is pending (appends and acks), then close. Idempotent."""
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
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

    async def append(self, drafts: Sequence[Outgoing]) -> list[Record]:
        """Make drafts durable; return them as records once committed.

        Raises:
            OutboxFullError: the disk or the cap left no room even after eviction.
            OutboxError: the database failed.
        """
        if not drafts:
            return []
        future: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        self._pending.append((drafts, future))
        self._kick()
        return await future

    def ack(self, pos: int) -> None:
        """The broker acknowledged the record at queue position ``pos``: delete it later.

        Deletions are gathered for ``ACK_DELAY_S`` and committed without waiting for
        fsync: losing one in a power cut only means sending that record again, which
        consumers already de-duplicate by ``id``.
        """
        self._acked.append(pos)
        if self._ack_timer is None:
            self._ack_timer = asyncio.get_running_loop().call_later(ACK_DELAY_S, self._ack_due)

    def _ack_due(self) -> None:
        self._ack_timer = None
        self._kick()

    async def read_after(self, pos: int, limit: int) -> list[Record]:
        """Records queued after position ``pos``, oldest first.

        Recently committed records are served from memory; older ones (a backlog
        after an outage or a restart) from the database.
        """
        tail = self._tail
        if tail and tail[0].pos <= pos + 1:
            start = bisect.bisect_right(tail, pos, key=lambda r: r.pos)
            return tail[start : start + limit]
        rows = await self._run(self._read_sync, pos, limit)
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
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        acked, self._acked = self._acked, []
        drafts = [d for ds, _ in batch for d in ds]
        try:
            records, eviction = await self._run(self._commit_sync, drafts, acked)
        except OutboxError as exc:
            self.stats.last_error = str(exc)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        start = 0
        for ds, fut in batch:
            if not fut.done():
                fut.set_result(records[start : start + len(ds)])
            start += len(ds)
        if records:
            self._remember(records)
            self.changed.set()
        if eviction.count:
            if self._tail:
                gone = set(eviction.positions)
                self._tail = [r for r in self._tail if r.pos not in gone]
                self._tail_bytes = sum(len(r.payload) for r in self._tail)
            self._report_eviction(eviction)

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

    def _report_eviction(self, ev: Eviction) -> None:
        log.warning(
            "outbox over its cap: evicted low-priority records",
            count=ev.count,
            bytes=ev.bytes,
            by_priority=ev.by_priority,
            max_bytes=self.max_bytes,
        )
        report = Draft(
            topic=EVICTION_TOPIC,
            schema="outbox_evicted/1",
            device=None,
            ts=self._clock(),
            data={
                "count": ev.count,
                "bytes": ev.bytes,
                "by_priority": ev.by_priority,
                "seq_ranges": seq_ranges(ev.seqs),
                "media": ev.media,
                "max_bytes": self.max_bytes,
            },
            # Never evicted: it is what lets central tell a gap from a loss.
            priority=Priority.ALARM,
        )
        fut: asyncio.Future[list[Record]] = asyncio.get_running_loop().create_future()
        fut.add_done_callback(lambda f: f.exception())  # report failures are logged by _flush
        self._pending.append(([report], fut))
        self._kick()

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
            db.executescript(SCHEMA)
            _add_media_columns(db)
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open outbox {self.path}: {exc}") from exc
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        self.stats.last_seq = int(meta.get("last_seq", "0"))
        # Outboxes written before media existed have no last_pos: positions were seqs.
        self.stats.last_pos = int(meta.get("last_pos") or self.stats.last_seq)
        self._last_hash = meta.get("last_hash", GENESIS)
        depth, size = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)),0) FROM records"
        ).fetchone()
        self.stats.depth, self.stats.bytes = depth, size
        self._db = db

    def _read_sync(self, pos: int, limit: int) -> list[tuple[Any, ...]]:
        assert self._db is not None
        return self._db.execute(
            "SELECT seq, id, topic, payload, priority, retain, content_type, env_seq"
            " FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
            (pos, limit),
        ).fetchall()

    def _commit_sync(
        self, drafts: list[Outgoing], acked: list[int]
    ) -> tuple[list[Record], Eviction]:
        if not drafts:
            return self._delete_only(acked)
        try:
            return self._transaction(drafts, acked)
        except (ValueError, TypeError) as exc:  # a draft that is not JSON (NaN, bytes...)
            self._db_rollback()
            raise OutboxError(f"a record could not be serialised, batch refused: {exc}") from exc
        except sqlite3.Error as exc:
            self._db_rollback()
            if not _is_disk_full(exc):
                raise OutboxError(f"outbox write failed: {exc}") from exc
            self.stats.disk_full_total += 1
            # Make room by a quarter of what is queued, from telemetry and state only.
            log.error("disk full: evicting the oldest telemetry and state", path=str(self.path))
            freed = self._evict_sync(target=self.stats.bytes * 3 // 4, below=Priority.EVENT)
            try:
                records, ev = self._transaction(drafts, acked)
            except sqlite3.Error as exc2:
                self._db_rollback()
                raise OutboxFullError(
                    f"disk full: cannot store {len(drafts)} record(s) in {self.path}"
                ) from exc2
            ev.count += freed.count
            ev.bytes += freed.bytes
            ev.seqs += freed.seqs
            ev.positions += freed.positions
            ev.media += freed.media
            for k, v in freed.by_priority.items():
                ev.by_priority[k] = ev.by_priority.get(k, 0) + v
            return records, ev

    def _delete_only(self, acked: list[int]) -> tuple[list[Record], Eviction]:
        """A commit of deletions only: no fsync (the next FULL commit syncs it anyway)."""
        db = self._db
        assert db is not None
        db.execute("PRAGMA synchronous=NORMAL")
        try:
            return self._transaction([], acked)
        except sqlite3.Error as exc:
            self._db_rollback()
            raise OutboxError(f"outbox delete failed: {exc}") from exc
        finally:
            db.execute("PRAGMA synchronous=FULL")

    def _db_rollback(self) -> None:
        assert self._db is not None
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _transaction(
        self, drafts: list[Outgoing], acked: list[int]
    ) -> tuple[list[Record], Eviction]:
        db = self._db
        assert db is not None
        pos, seq, last_hash = self.stats.last_pos, self.stats.last_seq, self._last_hash
        records: list[Record] = []
        db.execute("BEGIN IMMEDIATE")
        if acked:
            deleted = db.execute(
                f"DELETE FROM records WHERE seq IN ({','.join('?' * len(acked))})"  # noqa: S608 - placeholders only
                " RETURNING LENGTH(payload)",
                acked,
            ).fetchall()
            freed_bytes = sum(r[0] for r in deleted)
        else:
            deleted, freed_bytes = [], 0
        rows: list[tuple[int, str, str, bytes, int, int, str | None, int | None]] = []
        for draft in drafts:
            pos += 1
            if isinstance(draft, MediaDraft):
                record = Record(
                    pos=pos,
                    seq=None,
                    id=draft.media_id,
                    topic=draft.topic,
                    payload=draft.body,
                    priority=draft.priority,
                    retain=False,
                    content_type=draft.content_type,
                )
                rows.append(_row(record))
                records.append(record)
                continue
            seq += 1
            record_id = uuid7()
            payload = envelope(
                draft,
                seq=seq,
                record_id=record_id,
                prev=last_hash,
                site=self.site,
                gateway=self.gateway,
            )
            record = Record(
                pos=pos,
                seq=seq,
                id=record_id,
                topic=draft.topic,
                payload=payload,
                priority=draft.priority,
                retain=draft.retain,
            )
            rows.append(_row(record))
            last_hash = record.digest
            records.append(record)
        if drafts:
            # One statement for the batch: per-row execute() was ~15% of this method.
            db.executemany(
                "INSERT INTO records"
                " (seq, id, topic, payload, priority, retain, content_type, env_seq)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("last_seq", str(seq)), ("last_pos", str(pos)), ("last_hash", last_hash)],
            )
        size = self.stats.bytes + sum(len(r.payload) for r in records) - freed_bytes
        eviction = Eviction()
        # An eviction report alone never evicts: it would report itself forever.
        if size > self.max_bytes and any(d.topic != EVICTION_TOPIC for d in drafts):
            eviction = self._evict_rows(size, target=self.max_bytes, below=Priority.ALARM)
        db.execute("COMMIT")
        self.stats.bytes = size - eviction.bytes
        self.stats.depth += len(records) - len(deleted) - eviction.count
        self.stats.evicted_total += eviction.count
        self.stats.evicted_bytes_total += eviction.bytes
        self.stats.last_seq, self.stats.last_pos, self._last_hash = seq, pos, last_hash
        self.stats.appended_total += len(records)
        self.stats.acked_total += len(deleted)
        self.stats.commits_total += 1
        return records, eviction

    def _evict_sync(self, *, target: int, below: Priority) -> Eviction:
        """Evict in a transaction of its own (disk full: make room before retrying)."""
        db = self._db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        ev = self._evict_rows(self.stats.bytes, target=target, below=below)
        db.execute("COMMIT")
        self.stats.bytes -= ev.bytes
        self.stats.depth -= ev.count
        self.stats.evicted_total += ev.count
        self.stats.evicted_bytes_total += ev.bytes
        return ev

    def _evict_rows(self, size: int, *, target: int, below: Priority) -> Eviction:
        """Delete lowest-priority, oldest records until at most ``target`` bytes remain."""
        db = self._db
        assert db is not None
        ev = Eviction()
        rows = db.execute(
            "SELECT seq, env_seq, priority, LENGTH(payload) FROM records WHERE priority < ?"
            " ORDER BY priority, seq",
            (int(below),),
        )
        for pos, env_seq, priority, length in rows.fetchall():
            if size - ev.bytes <= target:
                break
            ev.positions.append(pos)
            if env_seq is None:
                ev.media += 1
            else:
                ev.seqs.append(env_seq)
            ev.bytes += length
            name = Priority(priority).name.lower()
            ev.by_priority[name] = ev.by_priority.get(name, 0) + 1
        if ev.positions:
            db.executemany("DELETE FROM records WHERE seq = ?", [(p,) for p in ev.positions])
        ev.count = len(ev.positions)
        return ev
