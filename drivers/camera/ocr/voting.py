"""One result per passage from the readings of several frames of the same truck.

Two ways to vote, both weighted by the engine's confidence:

- ``"string"``: each frame's whole reading is a ballot; the reading with the largest
  confidence sum wins. For containers only codes that verified in their frame
  (check digit and owner) take part, so the result is a code some frame read whole.
- ``"char"``: readings of the most common length vote position by position; the
  result may be a string no single frame read, so it is checked again (check digit
  and owner for containers, format for plates) before it counts as verified.

``bench/ocr.py`` measures both on the generated set (3 frames per passage): string
voting got 99.0 % and 99.3 % of container passages exact (seeds 7 and 11), char voting
96-97 % and 99.3 %; both 100 % on plates and no wrong verified code. ``"string"`` is
the default: at least as good, and it never assembles a code from pieces.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from drivers.camera.ocr.container import ContainerReading
from drivers.camera.ocr.plate import PlateReading, parse_plate
from gateway import iso6346

Method = Literal["string", "char"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Vote:
    """The winner of a vote.

    Attributes:
        text: the winning string, ``None`` when there were no ballots.
        support: confidence sum behind ``text`` (per position mean for ``"char"``).
        ballots: how many readings took part.
        agreeing: how many readings equal ``text`` exactly.
    """

    text: str | None
    support: float
    ballots: int
    agreeing: int


def vote(readings: Sequence[tuple[str, float]], method: Method = "string") -> Vote:
    """Vote over ``(text, confidence)`` readings."""
    if not readings:
        return Vote(text=None, support=0.0, ballots=0, agreeing=0)
    if method == "string":
        sums: dict[str, float] = defaultdict(float)
        for text, conf in readings:
            sums[text] += conf
        text, support = max(sums.items(), key=lambda kv: (kv[1], kv[0]))
    else:
        length = Counter(len(t) for t, _ in readings).most_common(1)[0][0]
        same = [(t, c) for t, c in readings if len(t) == length]
        chars = []
        support = 0.0
        for i in range(length):
            votes: dict[str, float] = defaultdict(float)
            for t, c in same:
                votes[t[i]] += c
            ch, weight = max(votes.items(), key=lambda kv: (kv[1], kv[0]))
            chars.append(ch)
            support += weight / length
        text = "".join(chars)
    agreeing = sum(1 for t, _ in readings if t == text)
    return Vote(text=text, support=support, ballots=len(readings), agreeing=agreeing)


@dataclass(frozen=True, slots=True, kw_only=True)
class PassageCode:
    """A container code decided for a passage.

    Attributes:
        code: the voted code (or the best unverified candidate).
        verified: check digit holds and owner known (re-checked after voting).
        support: confidence sum behind the code.
        frames: frames that read this exact code.
        seen: frames that read some code at this place (this one or a near miss).
    """

    code: str
    verified: bool
    support: float
    frames: int
    seen: int


def _distance(a: str, b: str) -> int:
    """Characters apart; readings of the same container are at most 3 apart."""
    if len(a) != len(b):
        return len(a) + len(b)
    return sum(x != y for x, y in zip(a, b, strict=True))


def container_passage(
    readings: Sequence[ContainerReading],
    *,
    method: Method = "string",
    owners: Collection[str] = iso6346.KNOWN_OWNERS,
) -> tuple[PassageCode, ...]:
    """The container codes of a passage, in order of first appearance."""
    groups: list[list[tuple[str, float, bool]]] = []
    frames_of: list[set[int]] = []  # two codes of one frame are two containers, never one
    for index, reading in enumerate(readings):
        for c in reading.codes:
            near = [
                (_distance(group[0][0], c.code), g)
                for g, group in enumerate(groups)
                if index not in frames_of[g] and _distance(group[0][0], c.code) <= 3
            ]
            if near:
                _, g = min(near)
                groups[g].append((c.code, c.confidence, c.verified))
                frames_of[g].add(index)
            else:
                groups.append([(c.code, c.confidence, c.verified)])
                frames_of.append({index})
    result = []
    for group in groups:
        if method == "string":
            ballots = [(code, conf) for code, conf, ok in group if ok]
        else:
            ballots = [(code, conf) for code, conf, _ in group if "?" not in code]
        won = vote(ballots, method)
        if won.text is not None:
            verified = iso6346.is_valid(won.text) and won.text[:4] in owners
            code, support = won.text, won.support
        else:  # nothing verified: report the strongest reading, unverified
            best = vote([(code, conf) for code, conf, _ in group], "string")
            assert best.text is not None
            code, support, verified = best.text, best.support, False
        frames = sum(1 for c, _, _ in group if c == code)
        result.append(
            PassageCode(
                code=code, verified=verified, support=support, frames=frames, seen=len(group)
            )
        )
    return tuple(result)


def plate_passage(
    readings: Sequence[PlateReading | None], *, method: Method = "string"
) -> PlateReading | None:
    """The plate of a passage: format-valid readings vote; ``None`` if none was valid."""
    valid = [r for r in readings if r is not None and r.valid]
    if not valid:
        return None
    won = vote([(r.key, r.confidence) for r in valid], method)
    if won.text is None:
        return None
    rows = next((r.raw for r in valid if r.key == won.text), None)
    parsed = parse_plate(
        [rows] if rows is not None else [won.text], won.support / max(1, won.ballots)
    )
    if not parsed.valid:
        return None
    # Re-parsing the voted text loses what was seen, not read: the plate's colour.
    colour = next((r.colour for r in valid if r.key == won.text and r.colour), None)
    return dataclasses.replace(parsed, colour=colour)
