"""The per-CPU cache of `autotune`'s verdicts: a JSON file of entries keyed by everything that
changes the timings (CPU, threads, layer shapes, candidates, the int8 implementation)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_CACHE_PATH = Path("~/.cache/docplatform/formats.json")
# Bumped when what an entry holds or means changes: older entries are then measured again.
CACHE_VERSION = 2


def cache_key(cpu_key: str, threads: int, dims: Any, candidates: Iterable[str]) -> str:
    """`dims` is an autotune_timing.LayerDims (any dataclass of the shapes)."""
    from vision.engine import kernels

    d = asdict(dims)
    dims_sig = ",".join(f"{k}={d[k]}" for k in sorted(d))
    # int8 timings belong to the int8 implementation that ran them (engine kernels or torch's op)
    return f"v{CACHE_VERSION}|{cpu_key}|threads={threads}|{dims_sig}|{'+'.join(candidates)}|int8={kernels.identity()}"


def load_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("format cache %s unreadable (%s); measuring again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def store_cache(path: Path, key: str, entry: dict) -> None:
    data = load_cache(path)
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: two workers starting together never see half a file
    except OSError as exc:
        log.warning("could not write format cache %s: %s", path, exc)
