"""Engine start-up: threads, weights, number formats. Runs in the engine thread."""

from __future__ import annotations

import logging
import os

import torch

from .config import EngineConfig
from .errors import InvalidSetting

log = logging.getLogger(__name__)


def configure_threads(threads: int | None) -> int:
    """Intra-op threads = physical cores unless set: SMT siblings share the FPUs the GEMMs need."""
    from .cpuinfo import cpu_description

    count = threads or cpu_description().physical_cores
    torch.set_num_threads(max(1, count))
    return torch.get_num_threads()


def load_for_engine(config: EngineConfig, loaded=None):
    """Load (unless given) and convert the model to the configured number formats.

    Returns (loaded model, {"lm": fmt, "vision": fmt}, what `auto` measured). A shared `loaded`
    (tests, benchmarks) is used as it is: converting it here would change it for its other users.
    """
    if loaded is not None:
        return loaded, _formats_of(loaded.model), {}
    from .autotune import choose_formats, formats_for
    from .loader import load_model
    from .quant import quantize_qwen3vl

    try:
        lm_format, vision_format, choice = formats_for(config.dtype, cache_path=config.format_cache)
    except ValueError as exc:  # a bad VISION_DTYPE: say so plainly, no stack trace
        raise InvalidSetting(str(exc)) from exc
    if choice is None and "int8" in (lm_format, vision_format):
        # How int8 layers run prompt-sized matmuls (packed kernel vs dequantize + bf16/fp32 GEMM)
        # is a per-CPU fact only the measurement knows; it is cached after the first time.
        choice = choose_formats(cache_path=config.format_cache)
    timings: dict = {}
    prefill_dtype = None
    if choice is not None:
        prefill_dtype = choice.int8_prefill_dtype
        timings = {
            "decode_token_s": choice.decode_token_s,
            "vision_gemm_s": choice.vision_gemm_s,
            "int8_prefill": choice.int8_prefill,
            "cpu": choice.cpu_key,
            "from_cache": choice.from_cache,
        }
    from .fusion import fuse_projections

    loaded = load_model(config.model, dtype=torch.float32, progress=os.isatty(2))
    # Before quantization, on the float weights: any linear format then quantizes the fused layers.
    fuse_projections(loaded.model)
    report = quantize_qwen3vl(
        loaded.model, lm_format=lm_format, vision_format=vision_format, int8_prefill_dtype=prefill_dtype
    )
    log.info("weights converted: %s", report.summary())
    _release_freed_memory()
    return loaded, {"lm": lm_format, "vision": vision_format}, timings


def _release_freed_memory() -> None:
    """Give the fp32 weights freed by conversion back to the OS.

    Loading reads fp32 (~8.5 GB for the 2B model); after int8/bf16 conversion glibc keeps the
    freed pages, so the process sat at ~7 GB where 3.7-4.6 GB is live (measured by the benchmarks).
    """
    import contextlib
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _formats_of(model: torch.nn.Module) -> dict[str, str]:
    """What a pre-loaded model runs in: judged by its first decoder layer's projection."""
    from .quant import format_of_module

    mlp = model.model.language_model.layers[0].mlp
    lm = getattr(mlp, "gate_up_proj", None) or mlp.up_proj
    vision = model.model.visual.blocks[0].mlp.linear_fc1
    return {"lm": format_of_module(lm), "vision": format_of_module(vision)}
