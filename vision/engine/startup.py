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
    The order matters: a bad setting and a missing or broken model folder fail first (no tuning
    for a model that cannot load); `auto` then times the loaded model's own layers.
    """
    if loaded is not None:
        return loaded, _formats_of(loaded.model), _timings_of(loaded.format_choice)
    from .autotune import choose_formats
    from .contract import resolve_formats
    from .fusion import fuse_projections
    from .pretrained import load_model
    from .quant import quantize_qwen3vl

    try:
        lm_format, vision_format = resolve_formats(config.dtype)
    except ValueError as exc:  # a bad VISION_DTYPE: say so plainly, no stack trace
        raise InvalidSetting(str(exc)) from exc
    loaded = load_model(config.model, dtype=torch.float32, progress=os.isatty(2))
    # Before quantization, on the float weights: any linear format then quantizes the fused layers.
    fuse_projections(loaded.model)
    choice = None
    if "auto" in (lm_format, vision_format) or "int8" in (lm_format, vision_format):
        # auto needs the verdict; an explicit int8 needs the per-CPU prefill path and activation
        # dtype only the measurement knows. Cached per CPU after a calm measurement.
        choice = choose_formats(cache_path=config.format_cache, model=loaded.model)
        lm_format = choice.lm_format if lm_format == "auto" else lm_format
        vision_format = choice.vision_format if vision_format == "auto" else vision_format
    report = quantize_qwen3vl(
        loaded.model,
        lm_format=lm_format,
        vision_format=vision_format,
        int8_prefill_dtype=choice.int8_prefill_dtype if choice is not None else None,
    )
    log.info("weights converted: %s", report.summary())
    loaded.format_choice = choice
    if choice is not None and lm_format not in ("fp32", "bf16"):
        loaded.activation_dtype = choice.activation_dtype
    _release_freed_memory()
    return loaded, {"lm": lm_format, "vision": vision_format}, _timings_of(choice)


def _timings_of(choice) -> dict:
    if choice is None:
        return {}
    return {
        "decode_token_s": choice.decode_token_s,
        "decode8_step_s": choice.decode8_step_s,
        "prefill_token_s": choice.prefill_token_s,
        "vision_gemm_s": choice.vision_gemm_s,
        "int8_prefill": choice.int8_prefill,
        "activations": choice.activations,
        "cpu": choice.cpu_key,
        "from_cache": choice.from_cache,
    }


def _release_freed_memory() -> None:
    """Give the fp32 weights freed by conversion back to the OS.

    Loading reads fp32 (~8.5 GB for the 2B model); after int8/bf16 conversion glibc keeps the
    freed pages, so without the trim the process holds ~7 GB where 3.7-4.6 GB is live.
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
