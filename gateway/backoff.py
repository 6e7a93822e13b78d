"""Capped exponential backoff with full jitter: the one place retries get their delays."""

from __future__ import annotations

import random


class Backoff:
    """Delays for retrying a failed device or connection.

    The n-th delay is drawn uniformly from ``[base/2, min(cap, base * 2**n)]`` so that
    many gateways restarting together do not retry in lockstep. :meth:`reset` after
    a success that lasted.
    """

    def __init__(
        self, *, base_s: float = 1.0, cap_s: float = 60.0, rng: random.Random | None = None
    ):
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The delay before the next attempt; each call counts one failure."""
        ceiling = min(self.cap_s, self.base_s * 2**self.attempts)
        self.attempts += 1
        return self._rng.uniform(min(self.base_s / 2, ceiling), ceiling)

    def reset(self) -> None:
        """Forget past failures."""
        self.attempts = 0
