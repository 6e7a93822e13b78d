"""The daemon as a process: a scale that was away is read again within 2 s of coming back."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.broker import Central, Mosquitto
from tests.device_return import time_returns

ABSENCES_S = (2.0, 8.0, 20.0)
"""Short, past the backoff's doubling to 8 s, and past 16 s: the old code took 9-17 s."""


@pytest.mark.slow
async def test_a_scale_that_comes_back_is_read_within_2_s_whatever_the_backoff(
    tmp_path: Path, broker: Mosquitto, central: Central
) -> None:
    returns = await time_returns(tmp_path, broker.port, central, ABSENCES_S)
    assert returns.exit_code == 0
    seconds = [round(t, 2) for t in returns.seconds]
    assert max(seconds) < 2.0, f"read again {seconds} s after returning"
