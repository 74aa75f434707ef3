"""Text every supported database can store.

PostgreSQL's text and jsonb types cannot hold NUL (U+0000); SQLite can. Model output can contain it
(any byte-level token can decode to it, and the tests' random-weight model emits it often), and so
can a client's message. Services pass such text through here before saving it, so both databases
store the same thing: U+FFFD, the replacement character, keeps the position visible.
"""

from __future__ import annotations

from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    return text.replace(NUL, REPLACEMENT) if NUL in text else text


def storable_json(value: Any) -> Any:
    """The same JSON value with NUL replaced in every string, keys included."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_json(k): storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value
