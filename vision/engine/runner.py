"""The model runner: Qwen3-VL's forward pass, driven piece by piece for continuous batching.

transformers' `forward` takes one padded batch and one cache object. A CPU server needs more: many
sequences of different lengths stepping together, a prompt admitted in chunks between decode steps,
and the vision tower run block by block. So this module reuses the model's own modules (projections,
norms, rotary tables, MLPs, vision blocks — quantized or not) and writes only the glue around them:

- The language model runs on a *flat* list of tokens from several sequences at once (one token per
  decoding sequence plus a chunk of one sequence's prompt). Linear layers see all of them as one
  matrix, so the weights are read once per step however many sequences decode (decode is bound by
  weight bytes). Decoding sequences keep their KV in slots of one arena (`kv.KVArena`), so their
  attention is one masked call per layer; prompt chunks attend one by one.
- The lm_head runs only on the rows that need a next token, not on every prompt token.
- The vision tower is a `VisionJob` whose `step()` runs a bounded number of blocks; while streams
  decode, one block of a large image runs in pieces of rows (`step_rows()`), so a full-page scan
  never stalls them for a whole block.

Correctness is checked against transformers' own `generate` in the tests (token-identical greedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from transformers.activations import GELUTanh
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    apply_rotary_pos_emb_vision,
    eager_attention_forward,
)
from transformers.vision_utils import (
    get_vision_attention_seqlens,
    get_vision_interpolation_indices_and_weights,
    get_vision_position_ids,
)

from . import kernels
from .kv import KVArena, SequenceKV
from .quant import Int4Linear, Int8Linear


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


@dataclass
class _PartialBlock:
    """A vision block part-way through `VisionJob.step_rows`."""

    q: torch.Tensor  # (1, heads, rows, head_dim), as the block's SDPA call takes it
    k: torch.Tensor
    v: torch.Tensor
    out: torch.Tensor  # the block's output, filled row piece by row piece
    kv: kernels.PackedKV | None = None  # keys/values packed once for the kernels' attention
    done: int = 0  # rows of `out` written


def _vision_flash(block: torch.nn.Module, hidden: torch.Tensor) -> bool:
    """A vision block's attention runs on the kernels' prefill attention: with bf16 activations, and
    with fp32 ones when the block's weights are quantized (int8/int4 formats). Their linears
    already round each activation row to int8 per block of 32 (up to 2^-8 of the block's largest
    value), so rounding q, k and v to bf16 (2^-9 of each value) adds less error than the format
    has; an fp32 tower (the exact path) keeps SDPA."""
    attn = block.attn
    if not kernels.flash_available(attn.head_dim):
        return False
    if hidden.dtype == torch.bfloat16:
        return True
    return hidden.dtype == torch.float32 and isinstance(attn.qkv, (Int8Linear, Int4Linear))


def _vision_mlp(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """`Qwen3VLVisionMLP.forward`, with the tanh GELU on the kernels (in place, 2.3 -> ~0.5 ms for
    560 x 4096 values) when the tower's weights are quantized (int8/int4) and its activations fp32.
    Those linears round every activation row to int8 per block of 32, far coarser than the
    kernel's few ulps (torch's own tanh form is off by up to 5e-5 relative, ours by 1e-6); an fp32
    or bf16 tower keeps torch's GELU, the exact path bit for bit."""
    fc1 = mlp.linear_fc1
    if (
        isinstance(fc1, (Int8Linear, Int4Linear))
        and isinstance(mlp.act_fn, GELUTanh)
        and x.dtype == torch.float32
    ):
        if x.shape[0] <= VISION_PIECE_ROWS:
            return _vision_mlp_rows(mlp, x)
        # Several images in one pass (8 x 560 patches): the rows in pieces. On the kernels each
        # row's numbers are unchanged (their linears and the GELU treat rows alone); where an
        # autotuned dense prefill GEMM runs instead (AMX), its blocking may round differently.
        out = torch.empty(x.shape[0], mlp.linear_fc2.out_features, dtype=x.dtype)
        for r0 in range(0, x.shape[0], VISION_PIECE_ROWS):
            out[r0 : r0 + VISION_PIECE_ROWS] = _vision_mlp_rows(mlp, x[r0 : r0 + VISION_PIECE_ROWS])
        return out
    return mlp(x)


# Rows of one piece of a quantized vision block's MLP and qkv projection: the MLP's fc1 output
# (rows x 4096 fp32, 16 MB) stays below glibc's 32 MB mmap ceiling, so the heap reuses it; a whole
# 8-image batch's (73 MB; its qkv: 55 MB) was fresh pages every block (~20 ms of page faults), and
# the piece stays in the last-level cache for the GELU and fc2.
VISION_PIECE_ROWS = 1024


def _vision_mlp_rows(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = mlp.linear_fc1(x)
    if kernels.gelu_tanh_(h) is None:  # no kernels, or a non-contiguous result
        h = mlp.act_fn(h)
    return mlp.linear_fc2(h)


def _vision_qkv(attn: torch.nn.Module, x: torch.Tensor, position_embeddings, bf16: bool = True):
    """A block's q, k (rotary applied) and v, each (rows, heads, head_dim): bf16 for the kernels'
    attention (`_vision_flash`), else fp32 for SDPA (quantized towers, fp32 activations: `_pieced`).
    Past VISION_PIECE_ROWS rows (several images) in row pieces, each copied into place: the same
    bits, since every op here treats rows alone."""
    rows = x.shape[0]
    cos, sin = position_embeddings
    if rows <= VISION_PIECE_ROWS:
        return _vision_qkv_rows(attn, x, cos, sin, bf16).unbind(0)
    packed = None
    for r0 in range(0, rows, VISION_PIECE_ROWS):
        r1 = min(rows, r0 + VISION_PIECE_ROWS)
        piece = _vision_qkv_rows(attn, x[r0:r1], cos[r0:r1], sin[r0:r1], bf16)
        if packed is None:
            packed = torch.empty(3, rows, *piece.shape[2:], dtype=piece.dtype)
        packed[:, r0:r1] = piece
    return packed.unbind(0)


def _vision_qkv_bf16(attn: torch.nn.Module, x: torch.Tensor, position_embeddings):
    """`_vision_qkv` for the kernels' attention: q, k (rotary), v in bf16."""
    return _vision_qkv(attn, x, position_embeddings, bf16=True)


def _vision_qkv_rows(
    attn: torch.nn.Module, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, bf16: bool = True
) -> torch.Tensor:
    """(3, rows, heads, head_dim) q (rotary), k (rotary), v of these rows. bf16: one kernel call
    from the fp32 projection (`kernels.vision_qkv_rope_bf16`), else transformers' ops (same bits);
    fp32 (not bf16): transformers' ops."""
    qkv = attn.qkv(x)
    if bf16 and qkv.dtype == torch.float32:
        packed = kernels.vision_qkv_rope_bf16(qkv, cos, sin, attn.num_heads)
        if packed is not None:
            return packed
    q, k, v = qkv.reshape(x.shape[0], 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    stacked = torch.stack((q, k, v))
    return stacked.bfloat16() if bf16 else stacked


def _pieced(block: torch.nn.Module, hidden: torch.Tensor) -> bool:
    """A quantized tower's block (int8/int4 linears, fp32 activations) that runs here, not in
    `Qwen3VLVisionBlock.forward`, where the kernels' bf16 attention does not run (`_vision_flash`:
    CPUs without AVX-512 BF16, or a kernel path forced lower): its qkv with the rotary and its MLP
    in row pieces as on the kernels' attention, its attention transformers' own (SDPA per image),
    so the block's bits are the module's."""
    return hidden.dtype == torch.float32 and isinstance(block.attn.qkv, (Int8Linear, Int4Linear))


def _vision_sdpa(attn: torch.nn.Module, q, k, v, cu_seqlens: torch.Tensor) -> torch.Tensor:
    """`Qwen3VLVisionAttention.forward`'s attention for implementations other than flash-attn
    (each image's span alone, through transformers' attention interface), on q, k, v (rows, heads,
    head_dim): (rows, heads * head_dim)."""
    rows = q.shape[0]
    interface = ALL_ATTENTION_FUNCTIONS.get_interface(
        attn.config._attn_implementation, eager_attention_forward
    )
    lengths = (cu_seqlens[1:] - cu_seqlens[:-1]).tolist()
    splits = [torch.split(t.transpose(0, 1).unsqueeze(0), lengths, dim=2) for t in (q, k, v)]
    outs = []
    for qs, ks, vs in zip(*splits, strict=True):
        out, _ = interface(
            attn, qs, ks, vs, attention_mask=None, scaling=attn.scaling, dropout=0.0, is_causal=False
        )
        outs.append(out)
    return torch.cat(outs, dim=1).reshape(rows, -1).contiguous()


def _vision_block(
    block: torch.nn.Module, hidden: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen, position_embeddings
):
    """One vision block: `Qwen3VLVisionBlock.forward` (transformers 5.24), with its attention on the
    kernels' prefill attention where `_vision_flash` says so (about 2.5x SDPA's CPU flash kernel
    on a full page), with transformers' attention for other quantized towers (`_pieced`: the row
    pieces on every CPU); otherwise the block itself."""
    attn = block.attn
    flash = _vision_flash(block, hidden)
    if not flash and not _pieced(block, hidden):
        return block(
            hidden, cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, position_embeddings=position_embeddings
        )
    rows = hidden.shape[0]
    q, k, v = _vision_qkv(attn, block.norm1(hidden), position_embeddings, bf16=flash)
    if flash:
        a = torch.empty(rows, attn.dim, dtype=torch.bfloat16)
        bounds = cu_seqlens.tolist()
        for start, end in zip(bounds[:-1], bounds[1:], strict=True):  # one span per image (or frame)
            packed = kernels.pack_kv(k[start:end].transpose(0, 1), v[start:end].transpose(0, 1))
            kernels.prefill_attention(q[start:end].transpose(0, 1), packed, attn.scaling, out=a[start:end])
    else:
        a = _vision_sdpa(attn, q, k, v, cu_seqlens)
    hidden = hidden + attn.proj(a.to(hidden.dtype))
    return hidden + _vision_mlp(block.mlp, block.norm2(hidden))


def _exact_tower(visual: torch.nn.Module) -> bool:
    """An fp32 vision tower with float linears: the format that matches transformers bit for bit
    (the tests' reference path), so it keeps transformers' own operations throughout."""
    qkv = visual.blocks[0].attn.qkv
    return visual.patch_embed.proj.weight.dtype == torch.float32 and not isinstance(
        qkv, (Int8Linear, Int4Linear)
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
            table = visual.pos_embed(interp_indices)  # (patches, 4, hidden)
            if _exact_tower(visual):  # transformers' own arithmetic, bit for bit
                hidden = visual.patch_embed(pixel_values.to(dtype))
                pos_embeds = (table * interp_weights[:, :, None]).sum(1)
            else:
                # The same products in another summation order: 3x faster for the patches, 2x for
                # the position rows (one batched product of each patch's 4 weights with its 4
                # rows, no second (patches, 4, hidden) temporary); 0.76 -> 0.28 s for a full page.
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
            hidden = _vision_block(
                self.visual.blocks[index],
                self.hidden,
                self.cu_seqlens,
                self.max_seqlen,
                self.position_embeddings,
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
            flash = _vision_flash(block, self.hidden)
            if flash:
                q, k, v = _vision_qkv_bf16(attn, block.norm1(self.hidden), self.position_embeddings)
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
        part.out[start:end] = h + _vision_mlp(block.mlp, block.norm2(h))
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
def run_vision_jobs(jobs: list[VisionJob], max_blocks: int, max_rows: int | None = None) -> None:
    """Advance every job by up to `max_blocks` blocks; images at the same block run as one pass.

    The patches of several images are concatenated, so each block's linears (qkv, proj, MLP) run
    once over all of them; attention stays per image (the block splits by `cu_seqlens`, as in
    `Qwen3VLVisionModel.forward` for several images). Images admitted together stay in step;
    one admitted later runs its own pass in the same step. `max_rows` (one job only): one piece
    of its current block instead (`VisionJob.step_rows`).
    """
    if max_rows is not None and len(jobs) == 1:
        jobs[0].step_rows(max_rows)
        return
    for _ in range(max(1, max_blocks)):
        groups: dict[int, list[VisionJob]] = {}
        alone: list[VisionJob] = []  # a block started row-wise finishes on its own
        for job in jobs:
            if job.result is None:
                if job.in_block:
                    alone.append(job)
                else:
                    groups.setdefault(job.next_block, []).append(job)
        if not groups and not alone:
            return
        for job in alone:
            job.step(1)
        for index, group in groups.items():
            if len(group) == 1:
                group[0].step(1)
            else:
                _block_together(index, group)


def _block_together(index: int, group: list[VisionJob]) -> None:
    sizes = [job.hidden.shape[0] for job in group]
    offsets = [0]
    for size in sizes[:-1]:
        offsets.append(offsets[-1] + size)
    cu_seqlens = torch.cat(
        [group[0].cu_seqlens]
        + [job.cu_seqlens[1:] + off for job, off in zip(group[1:], offsets[1:], strict=True)]
    )
    lengths = [job.max_seqlen for job in group]
    max_seqlen = None if any(m is None for m in lengths) else max(lengths)
    cos = torch.cat([job.position_embeddings[0] for job in group])
    sin = torch.cat([job.position_embeddings[1] for job in group])
    hidden = _vision_block(
        group[0].visual.blocks[index],
        torch.cat([job.hidden for job in group]),
        cu_seqlens,
        max_seqlen,
        (cos, sin),
    )
    for job, part in zip(group, torch.split(hidden, sizes), strict=True):
        job._after_block(index, part)


@dataclass
class _LayerNorms:
    """One decoder layer's RMSNorm weights in the activation dtype (cast once, not per call)."""

    input: torch.Tensor
    post_attention: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor


@dataclass
class _DecodeBatch:
    """The decoding sequences of a step that sit in arena slots: one attention call per layer."""

    rows: torch.Tensor  # (B,) their rows in the flat token matrix
    slots: torch.Tensor  # (B,) arena slot of each
    positions: torch.Tensor  # (B,) where its new key/value goes (= its committed length)
    lo: int  # slots lo..hi are attended together (a view of the arena, no copy)
    width: int  # hi - lo + 1
    keys_len: int  # longest sequence after this token: the key axis of the view
    # (width, 1, 1, keys_len) additive mask in the activation dtype (0 where key j is valid for slot
    # lo + i, -inf elsewhere: what SDPA turns a bool mask into on every call), built once per step;
    # None when every slot of the view sees all keys_len keys (batch 1: no mask at all).
    mask: torch.Tensor | None
    dense: bool  # the B slots are exactly lo..hi in order: no scatter of queries needed
    # The decode rows are every row of the step, in order (no prompt chunk beside them): queries,
    # keys and outputs are used as they are, with no gather or scatter by `rows`.
    all_rows: bool
    single: tuple[int, int] | None  # B == 1: (slot, position), written with plain indexing
    key_counts: torch.Tensor  # (B,) positions + 1: the keys each row attends (the kernels' op)


class ModelRunner:
    """Runs the language model over segments of several sequences in one pass.

    Per layer: one fused QKV projection and one fused gate/up projection when the model was fused
    at load (`fusion.fuse_projections`; a model shared with transformers keeps its separate
    projections and works too), RMSNorm as one op (`_rms_norm`), rotary on queries and keys
    together, one attention call for all decoding sequences, one per prompt chunk.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        act_dtype: torch.dtype | None = None,
        kv_slots: int = 8,
        kv_slot_tokens: int = 8192,
    ):
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
        self.eps = text_config.rms_norm_eps
        self.dtype = self._activation_dtype(act_dtype)
        self.norms = [
            _LayerNorms(
                input=layer.input_layernorm.weight.detach().to(self.dtype),
                post_attention=layer.post_attention_layernorm.weight.detach().to(self.dtype),
                q=layer.self_attn.q_norm.weight.detach().to(self.dtype),
                k=layer.self_attn.k_norm.weight.detach().to(self.dtype),
            )
            for layer in self.lm.layers
        ]
        self.final_norm = self.lm.norm.weight.detach().to(self.dtype)
        self._rms_bf16 = None  # the kernels' bf16 RMSNorm op, when built
        self._add_rms_bf16 = None  # residual add + RMSNorm in one call (bf16), when built
        self._qk_rope_store = None  # decode rows: q/k norm, rotary, KV writes in one call (bf16)
        self._decode_attn = None  # the kernels' bf16 decode attention (AVX-512 or AVX2), when built
        self._attn_isa = 0
        self._flash = False  # prompt chunks on the kernels' prefill attention (AVX-512 BF16)
        # The kernel path in force when the runner is built (kernels.isa(): the CPU's flags and
        # VISION_KERNEL_ISA, or use_isa) is the one its bf16 ops keep.
        self.isa = kernels.isa()
        built = kernels.module() if self.isa.ours else None
        if self.dtype == torch.bfloat16 and built is not None:
            self._flash = kernels.flash_available(self.head_dim)
            index = self.isa.index
            self._rms_bf16 = lambda x, w, eps: built.rms_norm_bf16(x, w, eps, index)
            self._add_rms_bf16 = lambda h, d, w, eps: built.add_rms_norm_bf16(h, d, w, eps, index)
            groups = self.num_heads // self.num_kv_heads
            attn_isa = self.isa.attention  # 0 on ref: SDPA
            if attn_isa and self.head_dim % 16 == 0 and self.head_dim <= 256 and groups <= 8:
                self._decode_attn, self._attn_isa = built.decode_attention, attn_isa
                self._qk_rope_store = lambda *a: built.decode_qk_rope_store(*a, index)
        self.arena = KVArena(
            self.num_layers, self.num_kv_heads, self.head_dim, self.dtype, kv_slots, kv_slot_tokens
        )

    def _rms_norm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """RMSNorm over the last axis. bf16: the kernels' one-call op (F.rms_norm's arithmetic; a
        rare last-bit difference from its sum order); fp32, or without the kernels: F.rms_norm."""
        if self._rms_bf16 is not None and x.dtype == torch.bfloat16:
            return self._rms_bf16(x, weight, self.eps)
        return F.rms_norm(x, (x.shape[-1],), weight, self.eps)

    def _add_rms_norm(self, hidden: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """hidden += delta (in place), then RMSNorm of it: one kernel call with bf16 activations
        (the same bits as the add and `_rms_norm` apart), the two ops otherwise."""
        if self._add_rms_bf16 is not None and hidden.dtype == torch.bfloat16 and delta.is_contiguous():
            return self._add_rms_bf16(hidden, delta, weight, self.eps)
        hidden.add_(delta)
        return self._rms_norm(hidden, weight)

    def _activation_dtype(self, requested: torch.dtype | None) -> torch.dtype:
        """Float linears take activations in their own dtype. Quantized ones cast inside, so their
        model runs in `requested` (bf16 where the CPU computes it natively, chosen by measurement in
        autotune), or fp32 by default."""
        proj = self.lm.layers[0].mlp
        proj = getattr(proj, "gate_up_proj", None) or proj.gate_proj
        weight = getattr(proj, "weight", None)
        if isinstance(weight, torch.Tensor) and weight.dtype.is_floating_point:
            return weight.dtype
        return requested or torch.float32

    def kv_bytes_per_token(self) -> int:
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.dtype.itemsize

    def new_kv(self, capacity: int) -> SequenceKV:
        return SequenceKV(
            self.num_layers, self.num_kv_heads, self.head_dim, self.dtype, capacity, arena=self.arena
        )

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
        cos, sin = cos[0, :, None, :], sin[0, :, None, :]  # (N, 1, head_dim): broadcast over heads
        # rotate_half(x) * sin == roll(x, half) * sin with its first half negated (negation is
        # exact): made once per step, so each layer's rotary is 4 ops instead of 7.
        half = self.head_dim // 2
        sin = torch.cat([-sin[..., :half], sin[..., half:]], dim=-1)
        bounds = []
        offset = 0
        for seg in segments:
            n = seg.input_ids.shape[0]
            bounds.append((offset, offset + n))
            offset += n
        batch, alone = self._plan(segments, bounds)

        # Each residual add runs with the RMSNorm after it (`_add_rms_norm`, in place): the next
        # layer's input norm, except after a deepstack layer (its image rows are added first) and
        # after the last layer (the final norm runs on the logit rows only).
        layers = lm.layers
        x = self._rms_norm(hidden, self.norms[0].input)
        for layer_idx, layer in enumerate(layers):
            norms = self.norms[layer_idx]
            a = self._attention(layer.self_attn, layer_idx, norms, x, cos, sin, batch, alone)
            x = self._add_rms_norm(hidden, a, norms.post_attention)
            m = self._mlp(layer.mlp, x)
            final = layer_idx + 1 == len(layers)
            if final or (deepstack is not None and layer_idx < len(deepstack)):
                hidden.add_(m)
                if not final:
                    hidden[vis_mask] = hidden[vis_mask] + deepstack[layer_idx]
                    x = self._rms_norm(hidden, self.norms[layer_idx + 1].input)
            else:
                x = self._add_rms_norm(hidden, m, self.norms[layer_idx + 1].input)

        for seg, (start, end) in zip(segments, bounds, strict=True):
            seg.kv.commit(end - start)
        rows = [end - 1 for seg, (_, end) in zip(segments, bounds, strict=True) if seg.want_logits]
        if not rows:
            return hidden.new_zeros((0, self.model.lm_head.out_features), dtype=torch.float32)
        last = self._rms_norm(hidden[rows], self.final_norm)
        return self.model.lm_head(last).float()

    def _plan(
        self, segments: list[Segment], bounds: list[tuple[int, int]]
    ) -> tuple[_DecodeBatch | None, list[tuple[Segment, int, int]]]:
        """Split the step into the batched decode rows (one token, KV in an arena slot) and the
        segments attended one by one (prompt chunks, sequences with private buffers)."""
        decode: list[tuple[int, int, int]] = []  # (row, slot, committed length)
        alone: list[tuple[Segment, int, int]] = []
        for seg, (start, end) in zip(segments, bounds, strict=True):
            kv = seg.kv
            if end - start == 1 and kv.slot is not None and kv.length < kv.capacity:
                decode.append((start, kv.slot, kv.length))
            else:
                alone.append((seg, start, end))
        if not decode:
            return None, alone
        row_list, slot_list, length_list = (list(column) for column in zip(*decode, strict=True))
        rows, slots, lengths = torch.tensor(row_list), torch.tensor(slot_list), torch.tensor(length_list)
        lo, hi = min(slot_list), max(slot_list)
        width = hi - lo + 1
        keys_len = max(length_list) + 1
        dense = slot_list == list(range(lo, hi + 1))
        mask = None  # the kernels' decode attention takes each row's length instead of a mask
        if self._decode_attn is None and not (dense and min(length_list) == keys_len - 1):
            valid = torch.zeros(width, dtype=torch.long)  # keys each slot of the view may see
            valid[slots - lo] = lengths + 1
            valid = valid.clamp(min=1)  # a slot that is not decoding attends its key 0; output unused
            allowed = (torch.arange(keys_len)[None, :] < valid[:, None])[:, None, None, :]
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill_(~allowed, float("-inf"))
        all_rows = row_list == list(range(bounds[-1][1]))
        single = (slot_list[0], length_list[0]) if len(decode) == 1 else None
        return (
            _DecodeBatch(
                rows, slots, lengths, lo, width, keys_len, mask, dense, all_rows, single, lengths + 1
            ),
            alone,
        )

    def _mlp(self, mlp, x: torch.Tensor) -> torch.Tensor:
        fused = getattr(mlp, "gate_up_proj", None)
        if fused is None:
            return mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
        gate, up = fused(x).chunk(2, dim=-1)
        return mlp.down_proj(F.silu(gate).mul_(up))

    def _qkv(self, attn, x: torch.Tensor) -> torch.Tensor:
        """(N, heads + 2 kv_heads, head_dim): queries, then keys, then values."""
        fused = getattr(attn, "qkv_proj", None)
        out = (
            fused(x) if fused is not None else torch.cat([attn.q_proj(x), attn.k_proj(x), attn.v_proj(x)], -1)
        )
        return out.view(x.shape[0], self.num_heads + 2 * self.num_kv_heads, self.head_dim)

    def _attention(self, attn, layer_idx, norms, x, cos, sin, batch, alone) -> torch.Tensor:
        n_tokens = x.shape[0]
        h, kvh = self.num_heads, self.num_kv_heads
        qkv = self._qkv(attn, x)
        if batch is not None and batch.all_rows and self._qk_rope_store and self._decode_attn:
            # A pure decode step in bf16: norms, rotary and the KV writes in one kernel call (the
            # same bits as the ops below), then one attention call for the batch.
            keys_all, values_all = self.arena.keys[layer_idx], self.arena.values[layer_idx]
            q = self._qk_rope_store(
                qkv.view(n_tokens, -1), norms.q, norms.k, cos[:, 0], sin[:, 0], keys_all, values_all,
                batch.slots, batch.positions, h, kvh, self.eps,
            )  # fmt: skip
            out = self._decode_attn(
                q, keys_all, values_all, batch.slots, batch.key_counts, self.scaling, self._attn_isa
            )
            return attn.o_proj(out.view(n_tokens, h * self.head_dim))
        q = self._rms_norm(qkv[:, :h], norms.q)
        k = self._rms_norm(qkv[:, h : h + kvh], norms.k)
        v = qkv[:, h + kvh :]
        qk = torch.cat([q, k], dim=1)  # (N, heads + kv_heads, head_dim): one rotary pass for both
        qk = qk * cos + qk.roll(self.head_dim // 2, dims=-1) * sin  # sin: first half negated (forward)
        q, k = qk[:, :h], qk[:, h:]

        if batch is not None and batch.all_rows:  # a pure decode step: the batch is every row
            out = self._decode_attention(layer_idx, q, k, v, batch)
            return attn.o_proj(out.view(n_tokens, h * self.head_dim))
        out = torch.empty(n_tokens, h, self.head_dim, dtype=q.dtype)
        if batch is not None:
            out[batch.rows] = self._decode_attention(layer_idx, q, k, v, batch)
        for seg, start, end in alone:
            n = end - start
            past = seg.kv.length
            keys, values = seg.kv.append(
                layer_idx, k[start:end].transpose(0, 1), v[start:end].transpose(0, 1)
            )
            if self._flash and n >= kernels.FLASH_MIN_ROWS:  # row i sees keys j <= past + i
                kernels.prefill_attention(
                    q[start:end].transpose(0, 1),
                    kernels.pack_kv(keys, values),
                    self.scaling,
                    causal=past,
                    out=out[start:end].view(n, -1),
                )
                continue
            if n == 1:
                mask, causal = None, False
            elif past == 0:
                mask, causal = None, True
            else:  # a prompt chunk after cached tokens: causal with an offset
                mask = torch.arange(past + n)[None, :] <= (past + torch.arange(n))[:, None]
                causal = False
            out[start:end] = F.scaled_dot_product_attention(
                q[start:end].transpose(0, 1)[None],
                keys[None],
                values[None],
                attn_mask=mask,
                is_causal=causal,
                scale=self.scaling,
                enable_gqa=True,
            )[0].transpose(0, 1)
        return attn.o_proj(out.view(n_tokens, h * self.head_dim))

    def _decode_attention(self, layer_idx: int, q, k, v, batch: _DecodeBatch) -> torch.Tensor:
        """All decoding sequences of the step in one call: (B, heads, head_dim).

        Each sequence's new key/value goes into its arena slot (one indexed write for the batch);
        the slots lo..hi are then one (width, kv_heads, keys_len, head_dim) view of the arena, with
        a mask for each sequence's own length. Grouped-query attention without expanding the keys:
        the queries of the heads sharing a KV head become that head's query rows,
        (width, kv_heads, groups, head_dim), as repeat_kv pairs them (q head i -> kv head i // groups).

        bf16 with the kernels built (AVX-512 or AVX2 CPU): the kernels' decode attention instead, each
        row against its own slot (reads each key and value once for the heads sharing it; fp32
        softmax weights; within one bf16 step of an fp64 reference, closer than SDPA's bf16 path;
        3-3.5x faster than SDPA at 64-2048 keys, batch 1 and 8).
        """
        keys_all, values_all = self.arena.keys[layer_idx], self.arena.values[layer_idx]
        if not batch.all_rows:
            q, k, v = q[batch.rows], k[batch.rows], v[batch.rows]
        if batch.single is not None:  # plain indexing: a copy into a view, no index_put
            slot, position = batch.single
            keys_all[slot, :, position] = k[0]
            values_all[slot, :, position] = v[0]
        else:
            keys_all[batch.slots, :, batch.positions] = k
            values_all[batch.slots, :, batch.positions] = v
        if self._decode_attn is not None:  # set only for bf16 activations
            # Each row against its own slot's first length + 1 keys: no view width, mask or scatter.
            return self._decode_attn(
                q, keys_all, values_all, batch.slots, batch.key_counts, self.scaling, self._attn_isa
            )
        end = batch.lo + batch.width
        keys = keys_all[batch.lo : end, :, : batch.keys_len]
        values = values_all[batch.lo : end, :, : batch.keys_len]
        groups = self.num_heads // self.num_kv_heads
        queries = q.view(-1, self.num_kv_heads, groups, self.head_dim)
        if not batch.dense:
            scattered = queries.new_zeros(batch.width, self.num_kv_heads, groups, self.head_dim)
            scattered[batch.slots - batch.lo] = queries
            queries = scattered
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=batch.mask, scale=self.scaling)
        if not batch.dense:
            out = out[batch.slots - batch.lo]
        return out.reshape(-1, self.num_heads, self.head_dim)

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
