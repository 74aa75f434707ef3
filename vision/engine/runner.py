"""The model runner: Qwen3-VL's forward pass, driven piece by piece for continuous batching.

transformers' `forward` takes one padded batch and one cache object. A CPU server needs more: many
sequences of different lengths stepping together, a prompt admitted in chunks between decode steps,
and the vision tower run block by block. So this module reuses the model's own modules (projections,
norms, rotary tables, MLPs, vision blocks — quantized or not) and writes only the glue around them:

- The language model runs on a *flat* list of tokens from several sequences at once (one token per
  decoding sequence plus a chunk of one sequence's prompt). Linear layers see all of them as one
  matrix, so the weights are read once per step however many sequences decode (decode is bound by
  weight bytes). Attention alone runs per sequence, against that sequence's own KV buffers.
- The lm_head runs only on the rows that need a next token, not on every prompt token.
- The vision tower is a `VisionJob` whose `step()` runs a bounded number of blocks.

Correctness is checked against transformers' own `generate` in the tests (token-identical greedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb
from transformers.vision_utils import (
    get_vision_attention_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from .kv import SequenceKV


@dataclass
class Segment:
    """A run of consecutive tokens of one sequence, processed in one step."""

    kv: SequenceKV  # the sequence's cache; the segment's keys/values are appended to it
    input_ids: torch.Tensor  # (n,) long
    positions: torch.Tensor  # (3, n) long: multimodal rotary positions (t, h, w)
    want_logits: bool  # True when the last token of this segment needs a next-token distribution
    # Image features for the image-pad tokens among `input_ids`, in order of appearance.
    vis_mask: torch.Tensor | None = None  # (n,) bool
    vis_embeds: torch.Tensor | None = None  # (n_vis, hidden)
    deepstack: list[torch.Tensor] = field(default_factory=list)  # per deepstack layer: (n_vis, hidden)


@dataclass
class EncodedImage:
    embeds: torch.Tensor  # (tokens, hidden): merged patch features that replace the image pads
    deepstack: list[torch.Tensor]  # per deepstack layer: (tokens, hidden), added to early LM layers

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in [self.embeds, *self.deepstack])


class VisionJob:
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
            hidden = visual.patch_embed(pixel_values.to(dtype))
            pos_embeds = (visual.pos_embed(interp_indices) * interp_weights[:, :, None]).sum(1)
            hidden = hidden + pos_embeds.to(hidden.dtype)
            self.position_embeddings = visual.rotary_pos_emb(hidden, position_ids)
        self.hidden = hidden.reshape(hidden.shape[0], -1)  # (patches, vision_hidden)
        self.next_block = 0
        self.deepstack: list[torch.Tensor] = []
        self.result: EncodedImage | None = None

    @property
    def blocks_left(self) -> int:
        return len(self.visual.blocks) - self.next_block

    @torch.inference_mode()
    def step(self, max_blocks: int) -> bool:
        """Run up to `max_blocks` blocks; return True once the image is fully encoded."""
        visual = self.visual
        end = min(len(visual.blocks), self.next_block + max(1, max_blocks))
        for index in range(self.next_block, end):
            self.hidden = visual.blocks[index](
                self.hidden,
                cu_seqlens=self.cu_seqlens,
                max_seqlen=self.max_seqlen,
                position_embeddings=self.position_embeddings,
            )
            if index in visual.deepstack_visual_indexes:
                merger = visual.deepstack_merger_list[visual.deepstack_visual_indexes.index(index)]
                self.deepstack.append(merger(self.hidden))
        self.next_block = end
        if self.next_block == len(visual.blocks):
            self.result = EncodedImage(embeds=visual.merger(self.hidden), deepstack=self.deepstack)
            del self.hidden, self.position_embeddings
            return True
        return False


class ModelRunner:
    """Runs the language model over segments of several sequences in one pass."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.lm = model.model.language_model
        self.visual = model.model.visual
        text_config = self.lm.config
        self.num_layers = text_config.num_hidden_layers
        self.num_heads = text_config.num_attention_heads
        self.num_kv_heads = text_config.num_key_value_heads
        self.head_dim = text_config.head_dim
        self.hidden_size = text_config.hidden_size
        self.scaling = self.head_dim**-0.5
        self.dtype = self.lm.embed_tokens.weight.dtype
        if not self.dtype.is_floating_point:  # embedding kept quantized: compute in bf16
            self.dtype = torch.bfloat16

    def new_kv(self, capacity: int) -> SequenceKV:
        return SequenceKV(self.num_layers, self.num_kv_heads, self.head_dim, self.dtype, capacity)

    def encode_image(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> VisionJob:
        return VisionJob(self.visual, pixel_values, grid_thw)

    @torch.inference_mode()
    def forward(self, segments: list[Segment]) -> torch.Tensor:
        """Process all segments; return logits (rows = segments with want_logits, in order)."""
        lm = self.lm
        input_ids = torch.cat([s.input_ids for s in segments])
        positions = torch.cat([s.positions for s in segments], dim=1)  # (3, N)
        hidden = lm.embed_tokens(input_ids).to(self.dtype)  # (N, H)

        vis_mask, deepstack = self._place_images(segments, hidden)
        cos, sin = lm.rotary_emb(hidden, positions.unsqueeze(1))  # (1, N, head_dim) each
        bounds = []
        offset = 0
        for seg in segments:
            n = seg.input_ids.shape[0]
            bounds.append((offset, offset + n))
            offset += n

        for layer_idx, layer in enumerate(lm.layers):
            residual = hidden
            x = layer.input_layernorm(hidden)
            hidden = residual + self._attention(layer.self_attn, layer_idx, x, cos, sin, segments, bounds)
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
            if deepstack is not None and layer_idx < len(deepstack):
                hidden[vis_mask] = hidden[vis_mask] + deepstack[layer_idx]

        for seg, (start, end) in zip(segments, bounds, strict=True):
            seg.kv.commit(end - start)
        rows = [end - 1 for seg, (_, end) in zip(segments, bounds, strict=True) if seg.want_logits]
        if not rows:
            return hidden.new_zeros((0, self.model.lm_head.out_features), dtype=torch.float32)
        last = lm.norm(hidden[rows])
        return self.model.lm_head(last).float()

    def _place_images(self, segments: list[Segment], hidden: torch.Tensor):
        """Put image features in place of the image pads; gather deepstack rows for the same spots."""
        if all(s.vis_mask is None for s in segments):
            return None, None
        masks = []
        embeds = []
        deepstack_parts: list[list[torch.Tensor]] = []
        for seg in segments:
            n = seg.input_ids.shape[0]
            if seg.vis_mask is None:
                masks.append(torch.zeros(n, dtype=torch.bool))
                continue
            masks.append(seg.vis_mask)
            embeds.append(seg.vis_embeds)
            deepstack_parts.append(seg.deepstack)
        mask = torch.cat(masks)
        hidden[mask] = torch.cat(embeds).to(hidden.dtype)
        layers = len(deepstack_parts[0])
        deepstack = [
            torch.cat([parts[i] for parts in deepstack_parts]).to(hidden.dtype) for i in range(layers)
        ]
        return mask, deepstack

    def _attention(self, attn, layer_idx, x, cos, sin, segments, bounds) -> torch.Tensor:
        n_tokens = x.shape[0]
        q = attn.q_norm(attn.q_proj(x).view(n_tokens, self.num_heads, self.head_dim))
        k = attn.k_norm(attn.k_proj(x).view(n_tokens, self.num_kv_heads, self.head_dim))
        v = attn.v_proj(x).view(n_tokens, self.num_kv_heads, self.head_dim)
        # (1, heads, N, head_dim) as apply_rotary_pos_emb expects
        q, k = apply_rotary_pos_emb(q.transpose(0, 1).unsqueeze(0), k.transpose(0, 1).unsqueeze(0), cos, sin)
        q, k, v = q[0], k[0], v.transpose(0, 1)  # (heads, N, head_dim)

        out = torch.empty(self.num_heads, n_tokens, self.head_dim, dtype=q.dtype)
        for seg, (start, end) in zip(segments, bounds, strict=True):
            n = end - start
            past = seg.kv.length
            keys, values = seg.kv.append(layer_idx, k[:, start:end], v[:, start:end])
            if n == 1:
                mask, causal = None, False
            elif past == 0:
                mask, causal = None, True
            else:  # a prompt chunk after cached tokens: causal with an offset
                mask = torch.arange(past + n)[None, :] <= (past + torch.arange(n))[:, None]
                causal = False
            out[:, start:end] = F.scaled_dot_product_attention(
                q[None, :, start:end],
                keys[None],
                values[None],
                attn_mask=mask,
                is_causal=causal,
                scale=self.scaling,
                enable_gqa=True,
            )[0]
        return attn.o_proj(out.transpose(0, 1).reshape(n_tokens, self.num_heads * self.head_dim))
