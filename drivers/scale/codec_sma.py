"""SMA scale protocol (Scale Manufacturers Association, SCP-0499 "Scale Serial
Communication Protocol, Levels #1 and #2").

Reply, 20 bytes::

    LF | s | r | n | m | f | wwwwwwwwww | uuu | CR

Every field follows the standard scale response message of SCP-0499 section 5.1, as
reproduced in the Sartorius PR 5210 operating manual, section 5.4.1 "Standard Scale
Response Message", and the PR 5220 instrument manual ("Standard Reply"):

- ``s`` status: ``Z`` centre of zero, ``O`` over, ``U`` under capacity, ``E`` zero
  error, ``T`` tare error, space otherwise; ``I`` initial-zero error is listed in the
  Fairbanks FB2550 user manual, appendix III "SMA Protocol". With ``E``/``I``/``T`` the
  weight is dashes.
- ``r`` range digit, ``1`` for a single-range scale.
- ``n``: ``G`` gross, ``N`` net, ``T`` tare (reply to ``M``), and ``g`` / ``n`` gross /
  net in high resolution (reply to ``H``, ``Q``, ``S``: ten times the displayed
  resolution, PR 5211 instrument manual section 5.3.2). A high-resolution value is
  still in the unit sent; only its resolution differs.
- ``m`` ``M`` motion, space stable; ``f`` reserved.
- The weight right aligned in 10 characters (point and minus sign included), the unit
  in 3.
- ``P``/``Q`` (weight after stability) answer ``<s>`` space, ten dashes and a blank
  unit when the scale did not settle in time (PR 5211 section 5.3.3): no weight and no
  error, counted in :attr:`SmaCodec.busy_count`.
- An unknown command is answered ``LF ? CR`` (SCP-0499 section 5.2).

Start or poll: the driver polls with ``<LF>W<CR>`` and sends no start command.
``W`` only reads; ``R`` (repeat continuously) would change a mode the indicator keeps
after the gateway goes away (other hosts on an RS-485 line then see an unasked-for
stream, and it takes ``<ESC>`` to stop it), and a restarted indicator forgets it, so
the link would fall silent until the driver reconnects. Polling costs 3 bytes per
reading and keeps the probe read-only (it sends each codec's ``poll_command``).
"""

from __future__ import annotations

import re
from typing import ClassVar

from drivers.scale.codec import Decoded, ScaleCodec
from drivers.scale.readings import WeightMeasured
from gateway.errors import FrameError
from gateway.readings import Stamp

LF = 0x0A
CR = 0x0D
CONTENT_LEN = 18  # s r n m f + 10 weight + 3 unit

_STATUSES = "ZOUEIT "
_ERROR_STATUSES = "EIT"  # the weight field then holds dashes
_OUT_OF_RANGE = "OU"
_GROSS_NET = "GNTgn"  # lower case: high resolution
_MOTION = "M "
_WEIGHT = re.compile(r" *(-?) *(\d+(?:\.\d*)?|\.\d+)")
_UNIT = re.compile(r"[A-Za-z]+ *")
_NOT_SETTLED_WEIGHT = "-" * 10  # with status space and a blank unit: P/Q timed out


def _decimals(value: float, limit: int) -> int:
    """Fewest decimals (at most ``limit``) that show ``value`` exactly."""
    return next((d for d in range(limit + 1) if round(value, d) == value), limit)


class SmaCodec(ScaleCodec):
    """Decoder and encoder for SMA SCP-0499 weight replies.

    Attributes:
        busy_count: replies saying the scale did not settle in time (no weight).
    """

    name: ClassVar[str] = "sma"
    poll_command: ClassVar[bytes | None] = b"\nW\r"

    def __init__(self) -> None:
        super().__init__()
        self.busy_count = 0

    def _decode_buffer(self, at: Stamp) -> list[Decoded]:
        out: list[Decoded] = []
        buf = self._buffer
        while buf:
            if not self._resync(LF, "LF", out):
                break
            # The frame ends at the first CR; an LF before it means this one was cut short.
            end = next(
                (i for i in range(1, min(len(buf), CONTENT_LEN + 2)) if buf[i] in (CR, LF)),
                None,
            )
            if end is None:
                if len(buf) < CONTENT_LEN + 2:
                    break  # wait for the rest
                out.append(FrameError(f"sma: no CR within {CONTENT_LEN + 2} bytes of LF"))
                self._in_error = True
                del buf[:1]
                continue
            if buf[end] == LF:
                out.append(FrameError(f"sma: frame cut short after {end - 1} bytes"))
                self._in_error = True
                del buf[:end]  # resync on the LF that started the next frame
                continue
            item = self._content(bytes(buf[1:end]), at)
            del buf[: end + 1]
            self._in_error = isinstance(item, FrameError)
            if item is not None:
                out.append(item)
        return out

    def _content(self, raw: bytes, at: Stamp) -> Decoded | None:
        """Decode what stood between LF and CR; ``None`` for a reply without a weight."""
        if raw == b"?":
            return FrameError("sma: indicator answered '?' (command not understood)")
        if len(raw) != CONTENT_LEN:
            return FrameError(f"sma: {len(raw)} bytes between LF and CR, expected 18")
        if any(not 0x20 <= b < 0x7F for b in raw):
            return FrameError(f"sma: non-printable byte in {raw!r}")
        text = raw.decode("ascii")
        status, span, gross_net, motion = text[0], text[1], text[2], text[3]
        weight_field, unit_field = text[5:15], text[15:18]
        if status not in _STATUSES:
            return FrameError(f"sma: unknown status {status!r}")
        if not span.isdigit():
            return FrameError(f"sma: range {span!r} is not a digit")
        if gross_net not in _GROSS_NET:
            return FrameError(f"sma: gross/net {gross_net!r} is not G, N, T, g or n")
        if motion not in _MOTION:
            return FrameError(f"sma: motion flag {motion!r} is not M or space")
        if status == " " and weight_field == _NOT_SETTLED_WEIGHT and not unit_field.strip():
            self.busy_count += 1
            return None
        if not _UNIT.fullmatch(unit_field):
            return FrameError(f"sma: unit {unit_field!r} is not letters")
        weight: float | None = None
        in_range = status not in _OUT_OF_RANGE + _ERROR_STATUSES
        if status not in _ERROR_STATUSES:
            match = _WEIGHT.fullmatch(weight_field)
            if match is not None:
                weight = float(match[2])
                if match[1]:
                    weight = -weight
            elif status not in _OUT_OF_RANGE:  # over/under range may show dashes too
                return FrameError(f"sma: weight {weight_field!r} is not a number")
        tare = None
        if gross_net == "T":  # the value shown is the tare, not a load on the platform
            tare, weight = weight, None
        return WeightMeasured(
            weight=weight,
            unit=unit_field.strip(),
            stable=motion != "M",
            in_range=in_range,
            net=gross_net in "Nn",
            tare=tare,
            at=at,
        )

    @classmethod
    def encode(cls, reading: WeightMeasured) -> bytes:
        """Encode as the indicator replies to ``W``.

        Status: ``E`` with dashes when there is no weight, ``O``/``U`` when out of range,
        ``Z`` at zero, space otherwise. The weight gets the fewest decimals (0 to 5)
        that show it exactly.

        Raises:
            ValueError: the weight does not fit 10 characters or the unit 3.
        """
        weight = reading.weight
        if weight is None:
            status, field = "E", "-" * 10
        else:
            if not reading.in_range:
                status = "O" if weight > 0 else "U"
            else:
                status = "Z" if weight == 0 else " "
            field = f"{weight:.{_decimals(abs(weight), 5)}f}"
        if len(field) > 10 or len(reading.unit) > 3 or not reading.unit.isalpha():
            raise ValueError(f"sma: cannot encode {weight} {reading.unit!r}")
        gross_net = "N" if reading.net else "G"
        motion = "M" if reading.stable is False else " "
        text = f"{status}1{gross_net}{motion} {field:>10}{reading.unit:<3}"
        return b"\n" + text.encode("ascii") + b"\r"
