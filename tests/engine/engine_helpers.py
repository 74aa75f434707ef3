"""Shared helpers for engine tests: a lively tiny model and request builders."""

from __future__ import annotations

import itertools

import torch
from PIL import Image, ImageDraw

from vision.engine import ChatMessage, EngineRequest, ImagePart, SamplingParams, TextPart

# With the writer's std of 0.02 a two-layer random network has nearly flat logits and emits the
# same token forever, which would make "same tokens alone and in a batch" true for trivial
# reasons. Redrawing the matrices with std 0.3 (seeded) gives outputs that depend on the image
# and the prompt, so the equivalence tests below can fail.
LIVELY_STD = 0.3
_ids = itertools.count()


def make_lively(loaded) -> None:
    generator = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for _, param in sorted(loaded.model.named_parameters()):
            if param.ndim >= 2:
                param.copy_(torch.randn(param.shape, generator=generator) * LIVELY_STD)


def picture(seed: int, size: tuple[int, int] | None = None) -> ImagePart:
    width, height = size or (96 + 40 * seed, 72 + 24 * seed)
    image = Image.new("RGB", (width, height), (40 * seed % 256, 200 - 30 * seed % 200, 90))
    draw = ImageDraw.Draw(image)
    draw.ellipse((8, 8, 40 + 8 * seed, 40), fill=(255, 255, 0))
    draw.text((10, height // 2), f"Invoice {seed}", fill=(0, 0, 0))
    return ImagePart.from_image(image)


def ask(
    parts: tuple,
    max_tokens: int = 8,
    *,
    history: list[ChatMessage] | None = None,
    use_prefix_cache: bool = True,
    **sampling,
) -> EngineRequest:
    sampling.setdefault("ignore_eos", True)
    # Greedy unless a test asks otherwise: an unset temperature would take the checkpoint's
    # generation_config.json defaults (the tiny checkpoint ships Qwen's: sampling at 0.7).
    sampling.setdefault("temperature", 0.0)
    messages = [*(history or []), ChatMessage("user", parts)]
    return EngineRequest(
        request_id=f"test-{next(_ids)}",
        messages=messages,
        sampling=SamplingParams(max_tokens=max_tokens, **sampling),
        use_prefix_cache=use_prefix_cache,
    )


def text(value: str) -> TextPart:
    return TextPart(value)
