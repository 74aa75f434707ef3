"""From OpenAI-style messages to what the runner eats: token ids, multimodal positions, and the
images (with their pixel budgets) behind the image pads.

Pixels are turned into patches only when the vision-feature cache misses, but the number of image
tokens is known up front from the image size and the budget (`smart_resize`), so a request's cost is
known before it runs and a too-long prompt is refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from PIL import Image, ImageOps

from .contract import PixelBudget
from .errors import InvalidRequest, RequestTooLong
from .types import ChatMessage, ImagePart, TextPart

# Qwen's special tokens in user text would be parsed as control tokens (a user could forge an image
# pad or end a turn); a zero-width space between "<" and "|" keeps the text readable and inert.
_SPECIAL_OPEN = "<|"
_INERT_OPEN = "<\u200b|"
ROLES = ("system", "user", "assistant")


@dataclass
class PreparedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    sha256: str
    budget: PixelBudget
    grid_thw: tuple[int, int, int]  # patches (t, h, w) after resizing
    tokens: int  # image pads it occupies in the prompt

    @property
    def cache_key(self) -> tuple:
        return (self.sha256, self.budget.min_pixels, self.budget.max_pixels)


@dataclass
class PreparedPrompt:
    input_ids: torch.Tensor  # (L,) long
    positions: torch.Tensor  # (3, L) long: Qwen3-VL multimodal rotary positions
    next_position: int  # rotary position of the first generated token
    images: list[PreparedImage]
    image_of_token: list[int]  # per token: index into `images`, or -1 for text
    digests: list[str | None]  # per token: image digest for image pads (prefix-cache key)

    @property
    def length(self) -> int:
        return self.input_ids.shape[0]

    @property
    def image_tokens(self) -> int:
        return sum(i.tokens for i in self.images)


class Preprocessor:
    """Needs the tokenizer, the (PIL) image processor and the chat template, not the full
    `Qwen3VLProcessor`, whose video half requires torchvision."""

    def __init__(self, tokenizer, image_processor, chat_template: str):
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.chat_template = chat_template
        self.patch_size = image_processor.patch_size
        self.merge_size = image_processor.merge_size
        self.image_token = "<|image_pad|>"
        self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)

    def image_grid(self, width: int, height: int, budget: PixelBudget) -> tuple[int, int, int]:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        factor = self.patch_size * self.merge_size
        try:
            h, w = smart_resize(
                height, width, factor=factor, min_pixels=budget.min_pixels, max_pixels=budget.max_pixels
            )
        except ValueError as exc:  # aspect ratio beyond 200:1
            raise InvalidRequest(f"image of {width}x{height} pixels: {exc}") from exc
        return (1, h // self.patch_size, w // self.patch_size)

    def image_tokens(self, width: int, height: int, budget: PixelBudget) -> int:
        _, gh, gw = self.image_grid(width, height, budget)
        return gh * gw // (self.merge_size**2)

    def prepare(self, messages: list[ChatMessage], budget: PixelBudget, max_tokens: int) -> PreparedPrompt:
        if not messages:
            raise InvalidRequest("messages must not be empty")
        conversation = []
        images: list[PreparedImage] = []
        for message in messages:
            if message.role not in ROLES:
                raise InvalidRequest(f"unknown role {message.role!r}")
            parts = []
            for part in message.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text.replace(_SPECIAL_OPEN, _INERT_OPEN)})
                elif isinstance(part, ImagePart):
                    images.append(self._prepare_image(part, budget))
                    parts.append({"type": "image"})
                else:
                    raise InvalidRequest(f"unsupported content part {type(part).__name__}")
            conversation.append({"role": message.role, "content": parts})
        text = self.tokenizer.apply_chat_template(
            conversation, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
        )
        pieces = text.split(self.image_token)
        if len(pieces) != len(images) + 1:
            raise InvalidRequest("the chat template did not place one image pad per image")
        expanded = pieces[0]
        for image, piece in zip(images, pieces[1:], strict=True):
            expanded += self.image_token * image.tokens + piece
        ids = self.tokenizer(expanded, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens:
            raise RequestTooLong(f"the prompt is {len(ids)} tokens, more than the limit of {max_tokens}")
        input_ids = torch.tensor(ids, dtype=torch.long)

        image_of_token = [-1] * len(ids)
        digests: list[str | None] = [None] * len(ids)
        is_image = (input_ids == self.image_token_id).tolist()
        image_index, seen = 0, 0
        for i, flag in enumerate(is_image):
            if not flag:
                continue
            while image_index < len(images) and seen >= images[image_index].tokens:
                image_index, seen = image_index + 1, 0
            image_of_token[i] = image_index
            digests[i] = images[image_index].sha256
            seen += 1
        if sum(is_image) != sum(i.tokens for i in images):
            raise InvalidRequest("image pads in the prompt do not match the images")

        positions, next_position = self._positions(input_ids, images)
        return PreparedPrompt(input_ids, positions, next_position, images, image_of_token, digests)

    def pixel_values(self, image: PreparedImage) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches for the vision tower: (patches, 3*temporal*patch*patch) and grid (3,)."""
        out = self.image_processor(
            images=[image.image],
            size={"shortest_edge": image.budget.min_pixels, "longest_edge": image.budget.max_pixels},
            return_tensors="pt",
        )
        grid = out["image_grid_thw"][0]
        if tuple(grid.tolist()) != image.grid_thw:
            raise InvalidRequest(
                f"image processor gave grid {tuple(grid.tolist())}, expected {image.grid_thw}"
            )
        return out["pixel_values"], grid

    def _prepare_image(self, part: ImagePart, budget: PixelBudget) -> PreparedImage:
        image = part.image
        try:
            image = ImageOps.exif_transpose(image)
            if image.mode != "RGB":
                image = image.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"cannot read image: {exc}") from exc
        width, height = image.size
        if width < 1 or height < 1:
            raise InvalidRequest("image has no pixels")
        grid = self.image_grid(width, height, budget)
        return PreparedImage(image, part.sha256, budget, grid, grid[1] * grid[2] // (self.merge_size**2))

    def _positions(self, input_ids: torch.Tensor, images: list[PreparedImage]) -> tuple[torch.Tensor, int]:
        """Qwen3-VL's 3D rotary positions, as `Qwen3VLModel.get_rope_index` computes them.

        Text advances all three axes together; an image's tokens get (t, row, column) positions
        starting at the current position, and the text after it continues from the image's largest
        extent. Reimplemented here (same result, checked in tests) because transformers keeps it
        as a method of the model, and preprocessing runs in the caller's thread without the model.
        """
        length = input_ids.shape[0]
        positions = torch.empty(3, length, dtype=torch.long)
        is_image = (input_ids == self.image_token_id).tolist()
        current = 0
        i = 0
        image_index = 0
        while i < length:
            if not is_image[i]:
                positions[:, i] = current
                current += 1
                i += 1
                continue
            _, gh, gw = images[image_index].grid_thw
            h, w = gh // self.merge_size, gw // self.merge_size
            rows = torch.arange(h).repeat_interleave(w) + current
            cols = torch.arange(w).repeat(h) + current
            n = h * w
            positions[0, i : i + n] = current
            positions[1, i : i + n] = rows
            positions[2, i : i + n] = cols
            current += max(h, w)
            i += n
            image_index += 1
        next_position = int(positions.max()) + 1 if length else 0
        return positions, next_position
