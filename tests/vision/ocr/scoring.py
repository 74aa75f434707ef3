"""Counting scored fields, shared by the generated-invoice and the real-corpus accuracy reports:
right / total / accuracy / silent (wrong without a flag) over a list of fields, and the fields
grouped by a key of their page or document."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Scored(Protocol):
    name: str
    right: bool
    flagged: bool


def tally(fields: list[Scored]) -> dict[str, Any]:
    right = sum(f.right for f in fields)
    return {
        "right": right,
        "total": len(fields),
        "accuracy": round(right / max(1, len(fields)), 4),
        "silent": sum(not f.right and not f.flagged for f in fields),
    }


def grouped(scores: Iterable[Any], key: Callable[[Any, Any], str]) -> dict[str, list[Any]]:
    """Every field of every score (a page's or a document's, with `.fields`) under `key(score,
    field)`, in the order met."""
    groups: dict[str, list[Any]] = defaultdict(list)
    for score in scores:
        for f in score.fields:
            groups[key(score, f)].append(f)
    return groups
