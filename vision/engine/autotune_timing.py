"""The timing harness of `autotune`: build one decoder layer's and the vision MLP's linears in each
candidate format (from a loaded model's own weights, or constant weights of the shapes) and time
them in interleaved rounds; `autotune` turns the timings into a verdict.

Two regimes are timed separately because they are bound by different things:
- decode (language model, one token): bound by weight bytes read. One decoder layer's linear
  shapes run at M=1 (and M=8, eight streams decoding) over enough distinct copies that they
  exceed the last-level cache several times; a single int8 matrix that fits the cache reads
  faster than DRAM would, which would flatter the small formats.
- vision tower / prefill: bound by FLOPs. The vision MLP (1024->4096->1024) runs at a few hundred
  rows and one layer's linears at a prompt chunk of rows.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from vision.engine.quant import INT4_GROUP_SIZE, Int8Linear, W8A8Linear, quantize_linear

# Rows of the prefill timing: a prompt chunk (the scheduler's prefill_chunk is 128).
PREFILL_ROWS = 128
# Keys per sequence in the activation-dtype probe: a page and a short answer.
ACT_PROBE_KEYS = 1024
MAX_ROUNDS = 30
MIN_TIMED_ROUNDS = 2
# How int8 layers run many-row calls (prefill, vision): the packed GEMV kernel, or dequantize
# and run a dense GEMM in bf16 or fp32. See Int8Linear.
PREFILL_DTYPES: dict[str, torch.dtype | None] = {
    "packed": None,
    "bf16": torch.bfloat16,
    "fp32": torch.float32,
}


@dataclass(frozen=True)
class LayerDims:
    """Qwen3-VL-2B-Instruct shapes (config.json of the published model)."""

    hidden: int = 2048  # text hidden size
    q_out: int = 2048  # 16 heads x head_dim 128
    kv_out: int = 1024  # 8 KV heads x 128
    intermediate: int = 6144  # MLP gate/up out, down in
    num_layers: int = 28
    vocab: int = 151936  # lm_head rows (tied to the embedding in the checkpoint)
    vision_hidden: int = 1024
    vision_intermediate: int = 4096
    vision_tokens: int = 512  # rows of the vision GEMM: a mid-size image's patches
    head_dim: int = 128

    def decode_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of one decoder layer's linears as the engine runs them (fusion.py): fused
        q/k/v, o, fused gate/up, down."""
        h, i = self.hidden, self.intermediate
        return [(self.q_out + 2 * self.kv_out, h), (h, self.q_out), (2 * i, h), (h, i)]

    @classmethod
    def of_model(cls, model: nn.Module) -> LayerDims:
        """The shapes of a loaded Qwen3-VL model (the tiny test checkpoint has its own)."""
        text = model.model.language_model.config
        fc1 = model.model.visual.blocks[0].mlp.linear_fc1
        return cls(
            hidden=text.hidden_size,
            q_out=text.num_attention_heads * text.head_dim,
            kv_out=text.num_key_value_heads * text.head_dim,
            intermediate=text.intermediate_size,
            num_layers=text.num_hidden_layers,
            vocab=text.vocab_size,
            vision_hidden=fc1.in_features,
            vision_intermediate=fc1.out_features,
            head_dim=text.head_dim,
        )

    def vision_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of the vision MLP: fc1, fc2."""
        return [
            (self.vision_intermediate, self.vision_hidden),
            (self.vision_hidden, self.vision_intermediate),
        ]

    def layer_params(self) -> int:
        return sum(o * i for o, i in self.decode_shapes())


@dataclass
class FormatTimings:
    """What one measurement found, per format: the raw minima, before any verdict."""

    decode_layer_s: dict[str, float] = field(default_factory=dict)  # one layer's linears, M=1
    decode_layer_m8_s: dict[str, float] = field(default_factory=dict)  # the same at M=8
    prefill_layer_s: dict[str, float] = field(default_factory=dict)  # one layer's linears, PREFILL_ROWS
    vision_gemm_s: dict[str, float] = field(default_factory=dict)  # vision MLP fc1+fc2
    int8_prefill_s: dict[str, float] = field(default_factory=dict)  # int8 many-row path -> vision MLP s
    activation_probe_s: dict[str, float] = field(default_factory=dict)  # "fp32"/"bf16" -> s per probe
    measured_s: float = 0.0
    source: str = "synthetic"  # "synthetic" or "weights of <model>"


def timed_min(fn: Callable[[], object], budget_s: float, min_reps: int = 2, max_reps: int = 50) -> float:
    """Min wall time of `fn` over repeats (after one warm-up call) within `budget_s`.

    Min, not mean: other processes share the two cores, and they only ever add time.
    """
    start = time.perf_counter()
    fn()
    best = math.inf
    for rep in range(max_reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        if rep + 1 >= min_reps and time.perf_counter() - start > budget_s:
            break
    return best


def _fake_linear(out_f: int, in_f: int, fmt: str) -> nn.Module:
    """A layer of the right shape and format, built fast: dense kernels do not care about values
    (no sparsity shortcuts; constants are normal numbers, no denormals), so weights are a memset
    rather than randn + quantization, which costs seconds for the ~550 MB involved.
    fill_ writes every page: torch.zeros could map the shared zero page and read from cache."""
    if fmt in ("int8", "w8a8"):
        q = torch.empty(out_f, in_f, dtype=torch.int8).fill_(3)
        scales = torch.full((out_f,), 1e-3)
        return Int8Linear(q, scales.bfloat16(), None) if fmt == "int8" else W8A8Linear(q, scales, None)
    dtype = torch.bfloat16 if fmt == "bf16" else torch.float32
    lin = nn.Linear(in_f, out_f, bias=False, device="meta")
    lin.weight = nn.Parameter(torch.empty(out_f, in_f, dtype=dtype).fill_(0.01), requires_grad=False)
    if fmt in ("fp32", "bf16"):
        return lin
    return quantize_linear(lin, fmt)


def _act_dtype(fmt: str) -> torch.dtype:
    # What the surrounding model feeds the layer: bf16 for a bf16 model, fp32 otherwise (the
    # quantized layers cast to bf16 inside, and that cast is part of what we time).
    return torch.bfloat16 if fmt == "bf16" else torch.float32


def bytes_per_weight(fmt: str) -> float:
    if fmt == "int4":
        from . import kernels

        # ours: one fp32 scale per 32 weights; torch's op: a bf16 scale and zero per group
        ours = kernels.active_isa() != kernels.TORCH_OP
        return 0.5 + (4.0 / kernels.BLOCK if ours else 4.0 / INT4_GROUP_SIZE)
    return {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "w8a8": 1.0}[fmt]


def _convert(lin: nn.Module, fmt: str) -> nn.Module:
    """A copy of a real float linear in `fmt` (fp32 reuses the weight itself)."""
    if fmt in ("fp32", "bf16"):
        dtype = torch.float32 if fmt == "fp32" else torch.bfloat16
        out = nn.Linear(lin.in_features, lin.out_features, bias=False, device="meta")
        weight = lin.weight.detach()
        out.weight = nn.Parameter(weight if weight.dtype == dtype else weight.to(dtype), requires_grad=False)
        return out
    return quantize_linear(lin, fmt)


class _FormatBench:
    """Weights of one format, built once, timed in rounds interleaved with the other formats.

    Interleaving matters on a shared machine: a neighbour's burst then slows one round of
    every format instead of all rounds of one format, and the per-format min stays comparable.
    With `sources` (a loaded model's own float layers) the timings are of the real weights.
    """

    def __init__(
        self,
        fmt: str,
        dims: LayerDims,
        copies: int,
        sources: list[list[nn.Module]] | None = None,
        vision_sources: list[nn.Module] | None = None,
    ) -> None:
        self.fmt, self.dims = fmt, dims
        if sources:
            self.layers = [[_convert(lin, fmt) for lin in layer] for layer in sources]
        else:
            self.layers = [[_fake_linear(o, i, fmt) for o, i in dims.decode_shapes()] for _ in range(copies)]
        self.copies = len(self.layers)
        if vision_sources:
            self.vision = [_convert(lin, fmt) for lin in vision_sources]
        else:
            self.vision = [_fake_linear(o, i, fmt) for o, i in dims.vision_shapes()]
        act = _act_dtype(fmt)
        self.x_vision = torch.randn(dims.vision_tokens, dims.vision_hidden, dtype=act)
        self.x = {
            rows: (torch.randn(rows, dims.hidden, dtype=act), torch.randn(rows, dims.intermediate, dtype=act))
            for rows in (1, 8, PREFILL_ROWS)
        }

    def _set_prefill(self, modules: list[nn.Module], int8_prefill: str) -> None:
        for lin in modules:
            if isinstance(lin, Int8Linear):
                lin.prefill_dtype = PREFILL_DTYPES[int8_prefill]

    def decode(self, rows: int) -> float:
        """Seconds for one decoder layer's linears at `rows` tokens, weights streamed from DRAM."""
        x_h, x_i = self.x[rows]
        t0 = time.perf_counter()
        for layer in self.layers:
            for lin in layer:
                lin(x_i if lin.in_features == self.dims.intermediate else x_h)
        return (time.perf_counter() - t0) / self.copies

    def prefill(self, int8_prefill: str = "packed") -> float:
        """Seconds for one layer's linears over PREFILL_ROWS prompt tokens (compute-bound: one copy)."""
        self._set_prefill(self.layers[0], int8_prefill)
        x_h, x_i = self.x[PREFILL_ROWS]
        t0 = time.perf_counter()
        for lin in self.layers[0]:
            lin(x_i if lin.in_features == self.dims.intermediate else x_h)
        return time.perf_counter() - t0

    def vision_mlp(self, int8_prefill: str = "packed") -> float:
        fc1, fc2 = self.vision
        self._set_prefill(self.vision, int8_prefill)
        t0 = time.perf_counter()
        fc2(fc1(self.x_vision))
        return time.perf_counter() - t0


class _ActivationProbe:
    """The per-layer work that is not a weight matmul, in one activation dtype: RMSNorms, rotary,
    residual adds and batched decode attention of 8 sequences over ACT_PROBE_KEYS keys each. A
    quantized model runs it in bf16 only where that is faster (bf16 is native with avx512_bf16 or
    AMX; emulated on AVX2-only CPUs, where it is slower)."""

    def __init__(self, dtype: torch.dtype, dims: LayerDims) -> None:
        heads, kv_heads = max(1, dims.q_out // dims.head_dim), max(1, dims.kv_out // dims.head_dim)
        groups = max(1, heads // kv_heads)
        self.hidden = torch.randn(8, dims.hidden, dtype=dtype)
        self.weight = torch.ones(dims.hidden, dtype=dtype)
        self.head_w = torch.ones(dims.head_dim, dtype=dtype)
        self.qk = torch.randn(8, heads + kv_heads, dims.head_dim, dtype=dtype)
        self.cos = torch.randn(8, 1, dims.head_dim, dtype=dtype)
        self.q = torch.randn(8, kv_heads, groups, dims.head_dim, dtype=dtype)
        self.keys = torch.randn(8, kv_heads, ACT_PROBE_KEYS, dims.head_dim, dtype=dtype)
        self.mask = torch.ones(8, 1, 1, ACT_PROBE_KEYS, dtype=torch.bool)

    def __call__(self) -> float:
        t0 = time.perf_counter()
        x = torch.nn.functional.rms_norm(self.hidden, (self.hidden.shape[-1],), self.weight)
        qk = torch.nn.functional.rms_norm(self.qk, (self.qk.shape[-1],), self.head_w)
        half = qk.shape[-1] // 2
        qk = qk * self.cos + torch.cat((-qk[..., half:], qk[..., :half]), dim=-1) * self.cos
        torch.nn.functional.scaled_dot_product_attention(self.q, self.keys, self.keys, attn_mask=self.mask)
        _ = x + self.hidden
        return time.perf_counter() - t0


def model_sources(model: nn.Module, dims: LayerDims, copies: int):
    """The first `copies` text layers' float linears (fused if the model was) and the first vision
    block's MLP: real weights to time. None when the model is already quantized."""
    layers = []
    for layer in model.model.language_model.layers[:copies]:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = [attn.qkv_proj] if hasattr(attn, "qkv_proj") else [attn.q_proj, attn.k_proj, attn.v_proj]
        gate_up = [mlp.gate_up_proj] if hasattr(mlp, "gate_up_proj") else [mlp.gate_proj, mlp.up_proj]
        linears = [*qkv, attn.o_proj, *gate_up, mlp.down_proj]
        if not all(type(lin) is nn.Linear and lin.weight.dtype.is_floating_point for lin in linears):
            return None, None
        layers.append(linears)
    block = model.model.visual.blocks[0].mlp
    vision = [block.linear_fc1, block.linear_fc2]
    if not all(type(lin) is nn.Linear for lin in vision):
        vision = None
    return layers, vision


def measure(
    dims: LayerDims,
    candidates: tuple[str, ...],
    budget_s: float,
    copies: int,
    model: nn.Module | None,
    pick: Callable[[dict[str, float]], str],
) -> FormatTimings:
    """One measurement: every candidate's decode (M=1, M=8), prefill and vision timings, in
    rounds. `pick` is the verdict a round must agree with before the measurement stops early."""
    start = time.perf_counter()
    sources, vision_sources = model_sources(model, dims, copies) if model is not None else (None, None)
    decode_layer: dict[str, float] = dict.fromkeys(candidates, math.inf)
    decode_m8: dict[str, float] = dict.fromkeys(candidates, math.inf)
    prefill: dict[str, float] = dict.fromkeys(candidates, math.inf)
    vision: dict[str, float] = dict.fromkeys(candidates, math.inf)
    int8_prefill: dict[str, float] = dict.fromkeys(PREFILL_DTYPES, math.inf) if "int8" in candidates else {}
    probes = {"fp32": _ActivationProbe(torch.float32, dims), "bf16": _ActivationProbe(torch.bfloat16, dims)}
    act: dict[str, float] = dict.fromkeys(probes, math.inf)
    with torch.no_grad():
        benches = [_FormatBench(f, dims, copies, sources, vision_sources) for f in candidates]
        # Round 0 is a warm-up (oneDNN primitive creation, first touch). Then timed rounds, at
        # least MIN_TIMED_ROUNDS, until the budget is spent and the latest round alone agrees
        # with the verdict of the mins (a neighbour's burst can flip a close call), but never
        # past twice the budget. Keep each format's min: neighbours only ever add time.
        for rnd in range(MAX_ROUNDS):
            round_start = time.perf_counter()
            this_d1: dict[str, float] = {}
            this_v: dict[str, float] = {}
            for b in benches:
                this_d1[b.fmt], d8, this_v[b.fmt] = b.decode(1), b.decode(8), b.vision_mlp()
                path = "packed"
                if b.fmt == "int8":
                    # An int8 model runs many-row calls on whichever path is fastest.
                    paths = {p: this_v[b.fmt] if p == "packed" else b.vision_mlp(p) for p in PREFILL_DTYPES}
                    this_v[b.fmt] = min(paths.values())
                    path = min(paths, key=paths.__getitem__)
                    if rnd > 0:
                        for p, t in paths.items():
                            int8_prefill[p] = min(int8_prefill[p], t)
                pre = b.prefill(path)
                if rnd > 0:
                    decode_layer[b.fmt] = min(decode_layer[b.fmt], this_d1[b.fmt])
                    decode_m8[b.fmt] = min(decode_m8[b.fmt], d8)
                    prefill[b.fmt] = min(prefill[b.fmt], pre)
                    vision[b.fmt] = min(vision[b.fmt], this_v[b.fmt])
            for name, probe in probes.items():
                t = probe()
                if rnd > 0:
                    act[name] = min(act[name], t)
            now = time.perf_counter()
            elapsed = now - start
            # Stop when another round would overrun the budget, not after it did.
            if rnd < MIN_TIMED_ROUNDS or elapsed + (now - round_start) < budget_s:
                continue
            agrees = pick(this_d1) == pick(decode_layer) and pick(this_v) == pick(vision)
            if agrees or elapsed > 2 * budget_s:
                break
        del benches
    return FormatTimings(
        decode_layer_s=decode_layer,
        decode_layer_m8_s=decode_m8,
        prefill_layer_s=prefill,
        vision_gemm_s=vision,
        int8_prefill_s=int8_prefill,
        activation_probe_s=act,
        measured_s=time.perf_counter() - start,
        source=f"weights of {getattr(model, 'name_or_path', '') or 'the loaded model'}"
        if sources
        else "synthetic",
    )
