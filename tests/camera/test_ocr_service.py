"""The OCR service under the core's service supervisor: a dead worker is replaced."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence

import numpy as np

from drivers.camera.ocr.service import OcrService
from drivers.camera.readings import CropsCaptured, RegionCrop, Snapshot
from gateway.backoff import Backoff
from gateway.readings import Stamp
from gateway.records import Outgoing, Record
from gateway.services import ServiceSupervisor


async def _emit(drafts: Sequence[Outgoing]) -> list[Record]:
    return []


async def test_a_killed_ocr_worker_is_started_again_and_the_daemon_side_reports_it() -> None:
    service = OcrService(_emit, check_every_s=0.2)
    supervisor = ServiceSupervisor(service, backoff=Backoff(base_s=0.2, cap_s=0.4))
    task = asyncio.create_task(supervisor.run())
    try:
        async with asyncio.timeout(120):
            await supervisor.ready.wait()
            first = service.pids
            assert first and supervisor.as_dict()["state"] == "up"
            os.kill(first[0], signal.SIGKILL)
            await supervisor.down.wait()  # noticed between reads, by the health check
            down = supervisor.as_dict()
            assert down["state"] == "down" and "died" in down["last_error"]
            service.submit("cam-1", _burst())  # while down: dropped and counted
            await supervisor.ready.wait()
        second = service.pids
        assert second and second != first
        status = supervisor.as_dict()
        assert status["state"] == "up" and status["restarts_total"] == 1
        assert status["dropped_down"] == 1 and status["passages"] == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert service.pids == ()
    assert not any(_alive(pid) for pid in (*first, *second)), "no worker left running"


def _burst() -> CropsCaptured:
    image = np.zeros((40, 120, 3), dtype=np.uint8)
    jpeg = Snapshot(jpeg=b"\xff\xd8\xff\xd9", width=120, height=40, sha256="0" * 64)
    crop = RegionCrop(region="cab-plate", kind="plate", image=image, jpeg=jpeg)
    return CropsCaptured(passage_id="p1", trigger="command", frame=1, frames=1,
                         crops=(crop,), at=Stamp.now())  # fmt: skip


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


OWNER = """
import asyncio, os, sys
from drivers.camera.ocr.worker import OcrReader

async def main():
    reader = OcrReader()
    await reader.start()
    os.write(int(sys.argv[1]), f"{reader.pids[0]}\\n".encode())
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_an_ocr_worker_ends_when_its_daemon_is_killed() -> None:
    """SIGKILL gives the daemon no chance to stop its worker: the worker sees it itself."""
    # The pid comes back on a pipe of its own: the worker inherits the owner's stdio,
    # and a pipe it held open would keep the owner's exit from being seen.
    read_end, write_end = os.pipe()
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(write_end), pass_fds=(write_end,),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    os.close(write_end)
    loop = asyncio.get_running_loop()
    pids = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(pids), os.fdopen(read_end, "rb")
    )
    try:
        async with asyncio.timeout(120):
            worker = int(await pids.readline())
        assert _alive(worker)
        # The worker is no child of ours: its pidfd says when it ends.
        pidfd = os.pidfd_open(worker)
        ended = asyncio.Event()
        asyncio.get_running_loop().add_reader(pidfd, ended.set)
    finally:
        transport.close()
        owner.kill()
        await owner.wait()
    try:
        async with asyncio.timeout(20):
            await ended.wait()
    finally:
        asyncio.get_running_loop().remove_reader(pidfd)
        os.close(pidfd)
        if _alive(worker):  # the test failed: leave no orphan behind it
            os.kill(worker, signal.SIGKILL)
    assert not _alive(worker)
