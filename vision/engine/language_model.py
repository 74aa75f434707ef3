"""The language-model runner: Qwen3-VL's text model driven piece by piece for continuous batching.

transformers' `forward` takes one padded batch and one cache object. A CPU server needs more: many
sequences of different lengths stepping together and a prompt admitted in chunks between decode
steps. So this module reuses the model's own modules (projections, norms, rotary tables, MLPs, in
whatever weight format `quant` gave them) and writes only the glue around them:

- The language model runs on a *flat* list of tokens from several sequences at once (one token per
  decoding sequence plus a chunk of one sequence's prompt). Linear layers see all of them as one
  matrix, so the weights are read once per step however many sequences decode (decode is bound by
  weight bytes). Decoding sequences keep their KV in slots of one arena (`kv.KVArena`), so their
  attention is one masked call per layer; prompt chunks attend one by one.
- The lm_head runs only on the rows that need a next token, not on every prompt token.
- Image features (from `vision_tower`) replace the image-pad tokens' embeddings; DeepStack rows are
  added after the first layers.

Correctness is checked against transformers' own `generate` in the tests (token-identical greedy).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import kernels
from .kv import KVArena, SequenceKV


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
            rope = (norms.q, norms.k, cos[:, 0], sin[:, 0])  # q/k norm weights, rotary tables
            store = (keys_all, values_all, batch.slots, batch.positions)  # where the KV rows go
            q = self._qk_rope_store(qkv.view(n_tokens, -1), *rope, *store, h, kvh, self.eps)
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
