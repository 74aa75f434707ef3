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
    from .autotune import formats_for
    from .loader import load_model
    from .quant import quantize_qwen3vl

    try:
        lm_format, vision_format, choice = formats_for(config.dtype, cache_path=config.format_cache)
    except ValueError as exc:  # a bad VISION_DTYPE: say so plainly, no stack trace
        raise InvalidSetting(str(exc)) from exc
    timings: dict = {}
    if choice is not None:
        timings = {
            "decode_token_s": choice.decode_token_s,
            "vision_gemm_s": choice.vision_gemm_s,
            "cpu": choice.cpu_key,
            "from_cache": choice.from_cache,
        }
    loaded = load_model(config.model, dtype=torch.float32, progress=os.isatty(2))
    report = quantize_qwen3vl(loaded.model, lm_format=lm_format, vision_format=vision_format)
    log.info("weights converted: %s", report)
    return loaded, {"lm": lm_format, "vision": vision_format}, timings


def _formats_of(model: torch.nn.Module) -> dict[str, str]:
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    lm = model.model.language_model.embed_tokens.weight.dtype
    vision = model.model.visual.patch_embed.proj.weight.dtype
    return {"lm": names.get(lm, str(lm)), "vision": names.get(vision, str(vision))}
