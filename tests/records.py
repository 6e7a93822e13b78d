"""Helpers to check what central received."""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

from gateway.records import GENESIS


def assert_chain(records: list[dict[str, Any]], payloads: dict[str, bytes]) -> None:
    """Records have strictly increasing, gap-free seq and each prev is the previous hash."""
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gaps: {seqs}"
    for before, after in itertools.pairwise(records):
        assert after["prev"] == hashlib.sha256(payloads[before["id"]]).hexdigest()
    if seqs[0] == 1:
        assert records[0]["prev"] == GENESIS


def payloads_by_id(messages: list[Any]) -> dict[str, bytes]:
    """Raw payload bytes of each enveloped record, keyed by record id."""
    out: dict[str, bytes] = {}
    for m in messages:
        try:
            body = json.loads(m.payload)
        except ValueError:
            continue
        if isinstance(body, dict) and body.get("seq") is not None:
            out[body["id"]] = m.payload
    return out
