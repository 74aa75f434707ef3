"""Engine configuration: a dataclass the caller fills (the worker reads Django settings, the CLI its
flags, the benchmarks their own). The engine itself never reads settings or the environment."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .contract import DEFAULT_MODEL


@dataclass
class EngineConfig:
    model: str = DEFAULT_MODEL  # hub id or local folder
    dtype: str = "auto"  # auto | fp32 | bf16 | int8 | int4 | w8a8 | "lm=int8,vision=bf16"
    threads: int | None = None  # None: physical cores
    max_batch_size: int = 8  # sequences decoding together
    kv_cache_mb: int = 2048  # prefix cache budget (finished sequences kept for reuse)
    vision_cache_mb: int = 512  # encoded image features kept for reuse
    max_prompt_tokens: int = 16384  # longer prompts are refused up front
    max_waiting: int = 64  # requests queued beyond this are refused (EngineOverloaded)
    # Pieces of new work interleaved with decode steps so running streams keep getting tokens while
    # a big page is admitted (no head-of-line blocking). A prefill chunk of 128 tokens of the 2B model
    # is ~2.7 s fp32 on two AVX2 cores; one vision block of a full A4 scan is ~4 s.
    prefill_chunk: int = 128
    # With no stream decoding there is nobody to keep waiting, so a prompt goes in bigger pieces:
    # int8 layers dequantize their weights once per call, which small chunks pay again and again
    # (int8 prefill measured 2.3x slower than bf16 at 128-token chunks). Bounded, so a request
    # arriving meanwhile waits at most one such step.
    solo_prefill_chunk: int = 1024
    vision_blocks_per_step: int = 1
    # With no stream decoding, vision work goes in bigger pieces too (bounded, like the prefill).
    solo_vision_blocks_per_step: int = 4
    # Patches of the images batched into one vision pass while streams decode (the first image
    # always runs): a full A4 scan is ~8,600 patches, one block of it ~4-6 s on two cores.
    vision_step_patches: int = 8192
    # One image larger than this while streams decode runs each block in pieces: the q/k/v of all
    # rows, then attention + MLP for this many rows at a time. For a full A4 scan (~8,600 patches)
    # a piece is about a quarter of a block (~1-1.5 s on two cores instead of ~5-6 s).
    vision_step_rows: int = 2048
    interleave: bool = True  # False: admit new work whole (benchmark comparison only)
    arrival_wait_s: float = 0.005  # short wait for more arrivals before a step with room left
    # KV of the sequences running at once (prompt + max_tokens each, reserved at admission); a
    # request that would overflow it waits for a running one to finish. 28 layers x 8 KV heads x
    # 128 x 2 (K, V) x 4 bytes = 229 KB per token in fp32 for the 2B model: 4 GiB is ~18k tokens.
    max_running_kv_mb: int = 4096
    format_cache: Path | None = None  # where `auto` keeps its per-CPU verdict
    # Tokens of one running sequence's slot in the KV arena (kv.KVArena; pages are mapped only as
    # tokens are written). Longer sequences (prompt + max_tokens) keep private buffers and attend
    # on their own instead of in the batched decode call.
    kv_slot_tokens: int = 8192
