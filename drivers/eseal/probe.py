"""``gatewayctl probe eseal PORT``: is a Hi-G-Tek reader there, with which CRC start
value and which CRC coverage (layout)?

Read-only: the probe sends Get Results and Verify but never acknowledges an alert, so
the reader keeps repeating it until the daemon stores and acknowledges it. The manual
gives no CRC start value, and its two descriptions of the CRC's coverage differ for
reader frames (R# included or not, see :mod:`drivers.eseal.codec_reader`): the probe
tries the common start values, decodes what it hears with each layout, and names the
pair whose frames check out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from drivers.eseal.codec_reader import LAYOUTS, Layout, SealReaderCodec
from drivers.eseal.readings import NoSealInRange, SealAlert, SealRead
from drivers.serial_link import SerialLink
from gateway.errors import DeviceError, DeviceTimeoutError, FrameError
from gateway.readings import Stamp

COMMON_CRC_INITS = (0xFFFF, 0x0000, 0x1D0F)
"""CRC-16 CCITT start values seen on readers (CCITT-FALSE, XMODEM, AUG-CCITT)."""


@dataclass(slots=True)
class ReaderProbe:
    """What one CRC start value made of the bytes heard."""

    crc_init: int
    layout: Layout = "hgt"
    bytes_heard: int = 0
    good: list[SealRead | SealAlert | NoSealInRange] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def convincing(self) -> bool:
        """At least one valid frame, and more valid than invalid ones."""
        return bool(self.good) and len(self.good) > len(self.bad)


async def probe_reader(
    port: str,
    *,
    baudrate: int = 9600,
    framing: str = "8N1",
    crc_inits: tuple[int, ...] = COMMON_CRC_INITS,
    seconds: float = 3.0,
    reader: int = 0,
) -> list[ReaderProbe]:
    """Listen on ``port`` once per CRC start value, asking for the seals in range, and
    decode what was heard with every layout (one result per start value and layout)."""
    results: list[ReaderProbe] = []
    for crc_init in crc_inits:
        tries = [(ReaderProbe(crc_init, layout), SealReaderCodec(crc_init=crc_init, layout=layout))
                 for layout in LAYOUTS]  # fmt: skip
        results += [result for result, _ in tries]
        link = SerialLink(port, baudrate=baudrate, framing=framing)
        try:
            link.open()
            asking = tries[0][1]  # host frames are the same in every layout
            link.write(asking.read_request(reader) + asking.verify_request(reader))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + seconds
            while (left := deadline - loop.time()) > 0:
                try:
                    data = await link.read(left)
                except DeviceTimeoutError:
                    break
                for result, codec in tries:
                    result.bytes_heard += len(data)
                    for item in codec.feed(data, Stamp.now()):
                        if isinstance(item, FrameError):
                            result.bad.append(str(item))
                        elif isinstance(item, SealRead | SealAlert | NoSealInRange):
                            result.good.append(item)
        except DeviceError as exc:
            for result, _ in tries:
                result.error = str(exc)
            break  # the port itself failed: other CRC values cannot help
        finally:
            link.close()
        if any(result.convincing for result, _ in tries):
            break
    return results


def render(port: str, results: list[ReaderProbe]) -> tuple[str, bool]:
    """The technician's report and whether a reader was identified."""
    lines = [f"probing {port} for an e-seal gate reader (read-only: alerts are not acknowledged)"]
    for r in results:
        if r.error:
            lines.append(f"  error: {r.error}")
            continue
        lines.append(
            f"  crc_init 0x{r.crc_init:04X}: layout {r.layout}: {r.bytes_heard} bytes, "
            f"{len(r.good)} valid frame(s), {len(r.bad)} bad"
        )
        for item in r.good[:4]:
            lines.append(f"      {_describe(item)}")
        if r.bad and not r.good:
            lines.append(f"      e.g. {r.bad[0]}")
    found = next((r for r in results if r.convincing), None)
    if found is not None:
        lines.append(
            f'verdict: seal reader answers -> config driver = "eseal.reader", '
            f'port = "{port}", crc_init = 0x{found.crc_init:04X}, layout = "{found.layout}"'
        )
        return "\n".join(lines), True
    heard = any(r.bytes_heard for r in results)
    lines.append(
        "verdict: bytes arrive but no CRC start value checks out (baud rate or framing?)"
        if heard
        else "verdict: nothing heard (cable, power, port name, reader address, or a reader"
        " that only talks when a seal passes)"
    )
    return "\n".join(lines), False


def _describe(item: SealRead | SealAlert | NoSealInRange) -> str:
    if isinstance(item, NoSealInRange):
        return f"reader {item.reader}: no seal detected (#B=0)"
    if isinstance(item, SealAlert):
        when = "time ?" if item.event_time is None else f"{item.event_time:%Y-%m-%d %H:%M:%S}Z"
        return (
            f"reader {item.reader}: ALERT seal {item.seal_id} {item.event} at {when}"
            f" (burst 0x{item.burst:02X}, EV# {item.sequence})"
        )
    state = "opened" if item.opened else "sealed"
    if item.tampered:
        state += ", tampered" + (" (approved)" if item.approved_open else "")
    if item.suspended_set:
        state += ", suspended set"
    if item.low_battery:
        state += ", LOW BATTERY"
    return f"reader {item.reader}: seal {item.seal_id} {state}"
