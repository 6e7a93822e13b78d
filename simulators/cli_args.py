"""Option types the simulators' command lines share (``argparse`` ``type=`` callables)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable


def fault_list(known: Iterable[str]) -> Callable[[str], frozenset[str]]:
    """A ``--faults`` type: a comma list of names from ``known``, as a set.

    An unknown name is a usage error (argparse exits with status 2 and says which).
    """
    names = tuple(known)

    def parse(text: str) -> frozenset[str]:
        faults = frozenset(f.strip() for f in text.split(",") if f.strip())
        if unknown := faults - set(names):
            known_list = ",".join(names)
            raise argparse.ArgumentTypeError(
                f"unknown faults {sorted(unknown)}; known: {known_list}"
            )
        return faults

    return parse
