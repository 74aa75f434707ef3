"""The vision tower: one image (or several in one pass) through Qwen3-VL's vision blocks, a few
blocks at a time, so the engine can interleave image encoding with decoding streams.

An `ImageEncoding` is one image's progress through the tower; its `step()` runs a bounded number of
blocks, and while streams decode one block of a large image runs in pieces of rows (`step_rows()`),
so a full-page scan never stalls them for a whole block. `advance_encodings` runs several images
at the same block as one pass (their linears over all patches at once, attention per image).

The blocks are the model's own modules: transformers' for the exact fp32 tower, the converted
forms of `vision_blocks` for bf16 and int8/int4 towers (swapped in by `quant`), called the same
way. The tests compare the result with `model.get_image_features` (transformers 5.24).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision
from transformers.vision_utils import (
    get_vision_attention_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from . import kernels
from .vision_blocks import KernelVisionBlock, kernel_attention, vision_qkv


@dataclass
class EncodedImage:
    embeds: torch.Tensor  # (tokens, hidden): merged patch features that replace the image pads
    deepstack: list[torch.Tensor]  # per deepstack layer: (tokens, hidden), added to early LM layers

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [self.embeds, *self.deepstack])


@dataclass
class _PartialBlock:
    """A vision block part-way through `ImageEncoding.step_rows`."""

    q: torch.Tensor  # (1, heads, rows, head_dim), as the block's SDPA call takes it
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor  # the block's output, filled row piece by row piece
    kv: kernels.PackedKV | None = None  # keys/values packed once for the kernels' attention
    done: int = 0  # rows of `out` written


def _exact_tower(visual: torch.nn.Module) -> bool:
    """An fp32 tower of transformers' own blocks: the format that matches transformers bit for bit
    (the tests' reference path), so it keeps transformers' own operations throughout. A converted
    tower (bf16, int8/int4: `vision_blocks`) takes the faster forms below."""
    return visual.patch_embed.proj.weight.dtype == torch.float32 and not isinstance(
        visual.blocks[0], KernelVisionBlock
    )


def _patch_embed(embed: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """`Qwen3VLVisionPatchEmbed.forward` as one matrix product. Its Conv3d has kernel == stride
    and each input row is exactly one kernel's worth of pixels, so every output row is the
    weight (flattened to (hidden, C*T*P*P)) times that row plus the bias: F.linear, 3x faster
    than the convolution on CPU (0.2 vs 0.6 s for a full page's 8,580 patches, fp32) and equal
    to it within fp32 rounding. Any other convolution shape keeps the module."""
    proj = embed.proj
    kernel = tuple(proj.kernel_size)
    flat = proj.in_channels * kernel[0] * kernel[1] * kernel[2]
    if (
        not isinstance(proj, torch.nn.Conv3d)
        or tuple(proj.stride) != kernel
        or tuple(proj.padding) != (0, 0, 0)
        or tuple(proj.dilation) != (1, 1, 1)
        or proj.groups != 1
        or pixel_values.numel() % flat != 0
    ):
        return embed(pixel_values)
    weight = proj.weight.reshape(proj.out_channels, flat)
    rows = pixel_values.reshape(-1, flat).to(weight.dtype)
    return F.linear(rows, weight, proj.bias)


class ImageEncoding:
    """One image through the vision tower, a few blocks at a time.

    Mirrors `Qwen3VLVisionModel.forward` (transformers 5.24) for a single image; the tests compare
    the result with `model.get_image_features` to catch drift when transformers changes.
    """

    def __init__(self, visual: torch.nn.Module, pixel_values: torch.Tensor, grid_thw: torch.Tensor):
        self.visual = visual
        self.grid_thw = grid_thw.view(1, 3)
        config = visual.config
        dtype = visual.patch_embed.proj.weight.dtype
        interp_indices, interp_weights = get_vision_interpolation_indices_and_weights(
            self.grid_thw,
            num_grid_per_side=visual.num_grid_per_side,
            mode=visual.interpolation_mode,
            align_corners=visual.interpolation_align_corners,
            spatial_merge_size=config.spatial_merge_size,
        )
        position_ids = get_vision_position_ids(self.grid_thw, visual.spatial_merge_size)
        self.cu_seqlens, self.max_seqlen = get_vision_attention_seqlens(self.grid_thw, config)
        with torch.inference_mode():
            table = visual.pos_embed(interp_indices)  # (patches, 4, hidden)
            if _exact_tower(visual):  # transformers' own arithmetic, bit for bit
                hidden = visual.patch_embed(pixel_values.to(dtype))
                pos_embeds = (table * interp_weights[:, :, None]).sum(1)
            else:
                # The same products in another summation order: 3x faster for the patches, 2x for
                # the position rows (one batched product of each patch's 4 weights with its 4
                # rows, no second (patches, 4, hidden) temporary); together about 2.7x on a full page.
                hidden = _patch_embed(visual.patch_embed, pixel_values.to(dtype))
                pos_embeds = torch.bmm(interp_weights.to(table.dtype)[:, None, :], table).squeeze(1)
            hidden = hidden + pos_embeds.to(hidden.dtype)
            self.position_embeddings = visual.rotary_pos_emb(hidden, position_ids)
        self.hidden = hidden.reshape(hidden.shape[0], -1)  # (patches, vision_hidden)
        self.next_block = 0
        self.deepstack: list[torch.Tensor] = []
        self.result: EncodedImage | None = None
        self._partial: _PartialBlock | None = None  # a block being run a piece of rows at a time

    @property
    def blocks_left(self) -> int:
        return len(self.visual.blocks) - self.next_block

    @property
    def patches(self) -> int:
        return self.hidden.shape[0] if self.result is None else 0

    @property
    def in_block(self) -> bool:
        """A block was started row-wise (`step_rows`) and is not finished."""
        return self._partial is not None

    @torch.inference_mode()
    def step(self, max_blocks: int) -> bool:
        """Run up to `max_blocks` blocks; return True once the image is fully encoded. A block
        started row-wise is finished first (it counts as one)."""
        if self._partial is not None:
            self.step_rows(1 << 30)
            max_blocks -= 1
            if self.result is not None or max_blocks <= 0:
                return self.result is not None
        end = min(len(self.visual.blocks), self.next_block + max(1, max_blocks))
        for index in range(self.next_block, end):
            hidden = self.visual.blocks[index](
                self.hidden,
                cu_seqlens=self.cu_seqlens,
                max_seqlen=self.max_seqlen,
                position_embeddings=self.position_embeddings,
            )
            self._after_block(index, hidden)
        return self.result is not None

    @torch.inference_mode()
    def step_rows(self, max_rows: int) -> bool:
        """Advance the current block by one piece: first the q/k/v of all rows (with rotary),
        then attention, projection and MLP for the next `max_rows` rows. Each output row of a
        block depends on every row only through k and v, so the block splits by rows exactly.
        Images with several attention spans (video frames) run whole blocks instead."""
        if len(self.cu_seqlens) != 2:
            return self.step(1)
        block = self.visual.blocks[self.next_block]
        attn = block.attn
        rows = self.hidden.shape[0]
        if self._partial is None:
            flash = kernel_attention(block, self.hidden)
            if flash:
                q, k, v = vision_qkv(attn, block.norm1(self.hidden), self.position_embeddings, bf16=True)
            else:
                qkv = attn.qkv(block.norm1(self.hidden)).reshape(rows, 3, attn.num_heads, -1)
                q, k, v = qkv.permute(1, 0, 2, 3).unbind(0)
                cos, sin = self.position_embeddings
                q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
            self._partial = _PartialBlock(
                q=q.transpose(0, 1).unsqueeze(0),
                k=k.transpose(0, 1).unsqueeze(0),
                v=v.transpose(0, 1).unsqueeze(0),
                out=torch.empty_like(self.hidden),
            )
            if flash:  # packed once for all the block's pieces
                part = self._partial
                part.kv = kernels.pack_kv(part.k[0], part.v[0])
            return False
        part = self._partial
        start, end = part.done, min(rows, part.done + max(1, max_rows))
        if part.kv is not None:
            a = kernels.prefill_attention(part.q[0, :, start:end], part.kv, attn.scaling).to(
                self.hidden.dtype
            )
        else:
            a = F.scaled_dot_product_attention(part.q[:, :, start:end], part.k, part.v, scale=attn.scaling)
            a = a.transpose(1, 2).reshape(end - start, -1)
        h = self.hidden[start:end] + attn.proj(a)
        part.out[start:end] = h + block.mlp(block.norm2(h))
        part.done = end
        if end == rows:
            self._partial = None
            self._after_block(self.next_block, part.out)
        return self.result is not None

    def _after_block(self, index: int, hidden: torch.Tensor) -> None:
        visual = self.visual
        self.hidden = hidden
        if index in visual.deepstack_visual_indexes:
            merger = visual.deepstack_merger_list[visual.deepstack_visual_indexes.index(index)]
            self.deepstack.append(merger(hidden))
        self.next_block = index + 1
        if self.next_block == len(visual.blocks):
            self.result = EncodedImage(embeds=visual.merger(hidden), deepstack=self.deepstack)
            del self.hidden, self.position_embeddings


@torch.inference_mode()
def advance_encodings(encodings: list[ImageEncoding], max_blocks: int, max_rows: int | None = None) -> None:
    """Advance every encoding by up to `max_blocks` blocks; images at the same block run as one pass.

    The patches of several images are concatenated, so each block's linears (qkv, proj, MLP) run
    once over all of them; attention stays per image (the block splits by `cu_seqlens`, as in
    `Qwen3VLVisionModel.forward` for several images). Images admitted together stay in step;
    one admitted later runs its own pass in the same step. `max_rows` (one encoding only): one piece
    of its current block instead (`ImageEncoding.step_rows`).
    """
    if max_rows is not None and len(encodings) == 1:
        encodings[0].step_rows(max_rows)
        return
    for _ in range(max(1, max_blocks)):
        groups: dict[int, list[ImageEncoding]] = {}
        alone: list[ImageEncoding] = []  # a block started row-wise finishes on its own
        for encoding in encodings:
            if encoding.result is None:
                if encoding.in_block:
                    alone.append(encoding)
                else:
                    groups.setdefault(encoding.next_block, []).append(encoding)
        if not groups and not alone:
            return
        for encoding in alone:
            encoding.step(1)
        for index, group in groups.items():
            if len(group) == 1:
                group[0].step(1)
            else:
                _block_together(index, group)


def _block_together(index: int, group: list[ImageEncoding]) -> None:
    sizes = [encoding.hidden.shape[0] for encoding in group]
    offsets = [0]
    for size in sizes[:-1]:
        offsets.append(offsets[-1] + size)
    cu_seqlens = torch.cat(
        [group[0].cu_seqlens]
        + [encoding.cu_seqlens[1:] + off for encoding, off in zip(group[1:], offsets[1:], strict=True)]
    )
    lengths = [encoding.max_seqlen for encoding in group]
    max_seqlen = None if any(m is None for m in lengths) else max(lengths)
    cos = torch.cat([encoding.position_embeddings[0] for encoding in group])
    sin = torch.cat([encoding.position_embeddings[1] for encoding in group])
    hidden = group[0].visual.blocks[index](
        torch.cat([encoding.hidden for encoding in group]),
        cu_seqlens=cu_seqlens,
        max_seqlen=max_seqlen,
        position_embeddings=(cos, sin),
    )
    for encoding, part in zip(group, torch.split(hidden, sizes), strict=True):
        encoding._after_block(index, part)
