"""The vision blocks of a converted tower, swapped in by `quant.quantize_qwen3vl`.

The exact tower (fp32 weights, float linears) runs transformers' own `Qwen3VLVisionBlock`. A
converted tower gets these subclasses instead (the class of each module is swapped in place, as
`quant.Bf16Linear` is: same parameters, same state dict, only `forward` changes), so the vision
tower's code calls `block(...)` and `block.mlp(x)` whatever the weight format:

- `KernelVisionBlock` (bf16 towers): attention on the kernels' prefill attention where it runs
  (AVX-512 BF16; about 2.5x SDPA's CPU flash kernel on a full page), the module's forward elsewhere.
- `QuantizedVisionBlock` (int8/int4 towers, fp32 activations): the same kernels' attention on q, k,
  v rounded to bf16, or transformers' attention where those kernels do not run; its qkv projection
  with the rotary and its MLP (`QuantizedVisionMLP`: the kernels' tanh GELU) in row pieces.
"""

from __future__ import annotations

import torch
from transformers.activations import GELUTanh
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.qwen3_vl.modeling_qwen3_vl import (
    Qwen3VLVisionBlock,
    Qwen3VLVisionMLP,
    apply_rotary_pos_emb_vision,
    eager_attention_forward,
)

from . import kernels

# Rows of one piece of a quantized vision block's MLP and qkv projection: the MLP's fc1 output
# (rows x 4096 fp32, 16 MB) stays below glibc's 32 MB mmap ceiling, so the heap reuses it (a whole
# 8-image batch's, 73 MB, would be fresh pages every block: ~20 ms of page faults), and the piece
# stays in the last-level cache for the GELU and fc2.
VISION_PIECE_ROWS = 1024


class KernelVisionBlock(Qwen3VLVisionBlock):
    """A bf16 tower's block: `Qwen3VLVisionBlock.forward` (transformers 5.24) with its attention on
    the kernels' prefill attention where `kernel_attention` says so, the module's forward elsewhere."""

    # Whether the block's linears round every activation row to int8 per block of 32 (int8/int4
    # weights): then bf16 q, k and v (2^-9 of each value) add less error than the format has.
    rounds_activations = False

    def kernel_attention(self, hidden: torch.Tensor) -> bool:
        """The kernels' attention runs for these activations: bf16 ones, and fp32 ones when the
        block's linears already round them coarser than bf16 would (`rounds_activations`)."""
        if not kernels.flash_available(self.attn.head_dim):
            return False
        if hidden.dtype == torch.bfloat16:
            return True
        return hidden.dtype == torch.float32 and self.rounds_activations

    def runs_own_arithmetic(self, hidden: torch.Tensor) -> bool:
        """The block runs the arithmetic below rather than the module's forward: on the kernels'
        attention, or (a quantized block with fp32 activations) in row pieces with transformers'
        attention, so the bits are the module's."""
        return self.kernel_attention(hidden) or (hidden.dtype == torch.float32 and self.rounds_activations)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cu_seqlens: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if not self.runs_own_arithmetic(hidden_states):
            return super().forward(
                hidden_states, cu_seqlens=cu_seqlens, position_embeddings=position_embeddings, **kwargs
            )
        hidden = hidden_states
        attn = self.attn
        flash = self.kernel_attention(hidden)
        q, k, v = vision_qkv(attn, self.norm1(hidden), position_embeddings, bf16=flash)
        if flash:
            a = torch.empty(hidden.shape[0], attn.dim, dtype=torch.bfloat16)
            bounds = cu_seqlens.tolist()
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):  # one span per image (or frame)
                packed = kernels.pack_kv(k[start:end].transpose(0, 1), v[start:end].transpose(0, 1))
                kernels.prefill_attention(
                    q[start:end].transpose(0, 1), packed, attn.scaling, out=a[start:end]
                )
        else:
            a = _vision_sdpa(attn, q, k, v, cu_seqlens)
        hidden = hidden + attn.proj(a.to(hidden.dtype))
        return hidden + self.mlp(self.norm2(hidden))


class QuantizedVisionBlock(KernelVisionBlock):
    """An int8/int4 tower's block (fp32 activations): always its own arithmetic, on the kernels'
    attention with bf16 q, k, v where it runs, else transformers' attention (SDPA per image)."""

    rounds_activations = True


class QuantizedVisionMLP(Qwen3VLVisionMLP):
    """An int8/int4 tower's MLP: with fp32 activations, the tanh GELU on the kernels (in place,
    about 4x torch's op on 560 x 4096 values) between the two quantized linears, in row pieces of
    VISION_PIECE_ROWS. Those linears round every activation row to int8 per block of 32, far
    coarser than the kernel's few ulps (torch's own tanh form is off by up to 5e-5 relative, the
    kernel's by 1e-6). Other activations keep the module's forward."""

    def forward(self, hidden_state: torch.Tensor) -> torch.Tensor:
        x = hidden_state
        if not isinstance(self.act_fn, GELUTanh) or x.dtype != torch.float32:
            return super().forward(x)
        if x.shape[0] <= VISION_PIECE_ROWS:
            return _vision_mlp_rows(self, x)
        # Several images in one pass (8 x 560 patches): the rows in pieces. On the kernels each
        # row's numbers are unchanged (their linears and the GELU treat rows alone); where an
        # autotuned dense prefill GEMM runs instead (AMX), its blocking may round differently.
        out = torch.empty(x.shape[0], self.linear_fc2.out_features, dtype=x.dtype)
        for r0 in range(0, x.shape[0], VISION_PIECE_ROWS):
            out[r0 : r0 + VISION_PIECE_ROWS] = _vision_mlp_rows(self, x[r0 : r0 + VISION_PIECE_ROWS])
        return out


def _vision_mlp_rows(mlp: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    h = mlp.linear_fc1(x)
    if kernels.gelu_tanh_(h) is None:  # no kernels, or a non-contiguous result
        h = mlp.act_fn(h)
    return mlp.linear_fc2(h)


def kernel_attention(block: torch.nn.Module, hidden: torch.Tensor) -> bool:
    """Whether `block` attends on the kernels' prefill attention for these activations: a
    converted block that says so; transformers' own block (the exact tower) never."""
    return isinstance(block, KernelVisionBlock) and block.kernel_attention(hidden)


def vision_qkv(attn: torch.nn.Module, x: torch.Tensor, position_embeddings, bf16: bool = True):
    """A block's q, k (rotary applied) and v, each (rows, heads, head_dim): bf16 for the kernels'
    attention, else fp32 for transformers' attention (a quantized block without the kernels').
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
