"""`auto` weight formats: time real Qwen3-VL-2B layer shapes in each format on this CPU.

Why measure: the right answer flips between the CPUs this project runs on. On an Intel box with
avx512_bf16, bf16 decode was 2x fp32; on an AVX2-only EPYC bf16 GEMV is slower than fp32 and bf16
GEMM is emulated (ruinous for the vision tower). So the verdict is taken per CPU (`CpuInfo.key`)
by timing, in about two seconds, and cached in a JSON file.

Measured on the avx512_bf16 (no AMX) EPYC this was written on, 2 threads, min of 3 runs:

    format  decode layer M=1  M=4      est. s/token (28 layers + lm_head)  vision MLP, 512 rows
    fp32    10.4 ms           22.6 ms  0.354                               45.7 ms
    bf16     5.3 ms            5.1 ms  0.180                               20.1 ms
    int8     2.7 ms            3.6 ms  0.092                               22.6 ms (dequant+bf16)
    -> auto: lm=int8, vision=bf16.  (opt-in: int4 0.054 s/token; w8a8 vision MLP 13.8 ms)

All three decode formats stream weights at ~19 GB/s; `measure_memory_bandwidth` reads ~34 GB/s,
so the floors it gives (fp32 0.20, bf16 0.10, int8 0.05 s/token) are ~1.8x below what the GEMV
kernels reach. The lm_head estimate (layer time scaled by parameter count) matched real
151936x2048 timings: fp32 64 vs 64 ms, bf16 33 vs 30 ms, int8 16.7 vs 16.4 ms.

Two regimes are timed separately because they are bound by different things:
- decode (language model, one token): bound by weight bytes read. We time one decoder layer's
  seven linear shapes at M=1 over enough distinct copies that they exceed the last-level cache
  several times; one 2048x6144 int8 matrix (12.6 MB) fits a 32 MB L3 and reads at 30 GB/s where
  DRAM gives ~20, which would flatter the small formats.
- vision tower / prefill: bound by FLOPs. We time the vision MLP (1024->4096->1024) at a few
  hundred tokens.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vision.engine.contract import resolve_formats
from vision.engine.cpuinfo import cpu_description
from vision.engine.quant import (
    INT4_GROUP_SIZE,
    NEAR_LOSSLESS,
    Int8Linear,
    W8A8Linear,
    check_format,
    quantize_linear,
)
from vision.engine.types import FormatVerdict

log = logging.getLogger(__name__)

DEFAULT_CACHE_PATH = Path("~/.cache/docplatform/formats.json")
# A more precise format wins unless a less precise one is faster by more than this: timings on a
# shared 2-core box jitter by a few percent, and precision is worth a small price.
PRECISION_MARGIN = 0.05
# Total weights streamed per decode pass, in units of the last-level cache.
LLC_MULTIPLE = 4
_FALLBACK_LLC = 32 * 2**20
_MAX_COPIES = 16  # small dims would otherwise need thousands of copies of a few KB each
_MAX_ROUNDS = 30
# Rows of the prefill timing: a prompt chunk (the scheduler's prefill_chunk is 128).
PREFILL_ROWS = 128
# Keys per sequence in the activation-dtype probe: a page and a short answer.
ACT_PROBE_KEYS = 1024
# The request the LM format is chosen for: a document page's prompt, then an answer of which half is
# decoded alone and half beside seven other streams. Prefill and batched decode count, not only
# batch-1 decode: int8's packed kernel wins batch-1 decode and can lose the rest.
WORKLOAD_PROMPT_TOKENS = 1000
WORKLOAD_ALONE_TOKENS = 64
WORKLOAD_BATCH8_TOKENS = 64
_MIN_TIMED_ROUNDS = 2
# How int8 layers run many-row calls (prefill, vision): the packed GEMV kernel, or dequantize
# and run a dense GEMM in bf16 or fp32. See Int8Linear.
_PREFILL_DTYPES: dict[str, torch.dtype | None] = {
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
class FormatChoice:
    lm_format: str  # format for the language model + lm_head
    vision_format: str  # format for the vision tower
    decode_layer_s: dict[str, float] = field(default_factory=dict)  # fmt -> s, one layer's linears, M=1
    decode_layer_m8_s: dict[str, float] = field(default_factory=dict)  # same at M=8 (8 streams decoding)
    decode_token_s: dict[str, float] = field(default_factory=dict)  # fmt -> est. s/token, layers + lm_head
    decode8_step_s: dict[str, float] = field(default_factory=dict)  # fmt -> est. s per batch-8 step
    prefill_token_s: dict[str, float] = field(default_factory=dict)  # fmt -> est. s per prompt token
    vision_gemm_s: dict[str, float] = field(default_factory=dict)  # fmt -> s, fc1+fc2 at vision_tokens rows
    # int8 many-row path -> s for the same vision MLP ("packed", "bf16"/"fp32" = dequant + GEMM)
    int8_prefill_s: dict[str, float] = field(default_factory=dict)
    int8_prefill: str = "packed"  # the fastest of int8_prefill_s; vision_gemm_s["int8"] uses it
    score_s: dict[str, float] = field(default_factory=dict)  # fmt -> s for WORKLOAD; lm_format minimises it
    # Activations and KV cache of a quantized language model: "bf16" where the attention/norm
    # probe ran faster in bf16 by more than PRECISION_MARGIN (native bf16), else "fp32".
    activations: str = "fp32"
    activation_probe_s: dict[str, float] = field(default_factory=dict)  # "fp32"/"bf16" -> s per probe
    cpu_key: str = ""  # CpuInfo.key the verdict belongs to
    threads: int = 1  # torch threads during the measurement
    measured_s: float = 0.0  # wall time the measurement took
    measured_at: str = ""  # UTC ISO time of the measurement
    source: str = "synthetic"  # "synthetic" (constant weights of the shapes) or "weights of <model>"
    load: dict = field(default_factory=dict)  # MachineLoad of the measurement kept (asdict)
    calm: bool = True  # the machine was quiet enough; a busy verdict is used but never cached
    attempts: int = 1  # measurements taken (more when the machine was busy)
    from_cache: bool = False  # True when read from the cache file, not measured now

    @property
    def activation_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.activations == "bf16" else torch.float32

    @property
    def int8_prefill_dtype(self) -> torch.dtype | None:
        """For quantize_qwen3vl(..., int8_prefill_dtype=...)."""
        return _PREFILL_DTYPES[self.int8_prefill]

    def summary(self) -> str:
        dec = ", ".join(f"{k} {v * 1e3:.0f}ms" for k, v in self.decode_token_s.items())
        dec8 = ", ".join(f"{k} {v * 1e3:.0f}ms" for k, v in self.decode8_step_s.items())
        pre = ", ".join(f"{k} {v * 1e3:.1f}ms" for k, v in self.prefill_token_s.items())
        vis = ", ".join(f"{k} {v * 1e3:.1f}ms" for k, v in self.vision_gemm_s.items())
        src = "cache" if self.from_cache else f"measured in {self.measured_s:.2f}s"
        busy = "" if self.calm else " BUSY machine: not cached"
        return (
            f"lm={self.lm_format} vision={self.vision_format} activations={self.activations} ({src} at "
            f"{self.measured_at} on {self.source}{busy}; load {self.load}; decode/token: {dec}; batch-8 step: "
            f"{dec8}; prefill/token: {pre}; vision MLP: {vis}; int8 prefill {self.int8_prefill}; "
            f"{self.threads} threads; {self.cpu_key})"
        )

    def verdict(self) -> FormatVerdict:
        """The plain-data view the engine status (worker heartbeat, /readyz) carries."""
        return FormatVerdict(
            lm=self.lm_format,
            vision=self.vision_format,
            activations=self.activations,
            measured_at=self.measured_at,
            from_cache=self.from_cache,
            calm=self.calm,
            source=self.source,
            load=dict(self.load),
            decode_token_s=dict(self.decode_token_s),
            decode8_step_s=dict(self.decode8_step_s),
            prefill_token_s=dict(self.prefill_token_s),
            vision_gemm_s=dict(self.vision_gemm_s),
            score_s=dict(self.score_s),
            activation_probe_s=dict(self.activation_probe_s),
            cpu=self.cpu_key,
            threads=self.threads,
        )


# -- machine load: is the measurement worth keeping? -------------------------------------------------
# Others' share of all CPU time during a measurement, and steal (a hypervisor running other guests),
# above which the timings say more about the neighbours than about the formats. A busy run once
# picked fp32 on a CPU where int8 is 1.75x faster (issue 15), and the cache kept that for good.
BUSY_OTHERS = 0.15
BUSY_STEAL = 0.05
MAX_ATTEMPTS = 3
MAX_TUNING_BUDGETS = 5  # no new attempt once this many measurement budgets are spent


@dataclass
class MachineLoad:
    loadavg_1m: float = 0.0  # /proc/loadavg after the measurement
    others_cpu: float = 0.0  # fraction of all CPUs' time used by other processes meanwhile
    steal: float = 0.0  # fraction of CPU time stolen by the hypervisor meanwhile
    seconds: float = 0.0  # length of the window

    @property
    def calm(self) -> bool:
        return self.others_cpu <= BUSY_OTHERS and self.steal <= BUSY_STEAL


def _cpu_ticks() -> tuple[int, int, int, int] | None:
    """(total, busy, steal, ours) clock ticks from /proc/stat and /proc/self/stat; None off Linux."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:9]]
        own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    total = sum(fields)
    busy = user + nice + system + irq + softirq
    ours = int(own[11]) + int(own[12])  # utime + stime (fields 14 and 15 of stat)
    return total, busy, steal, ours


class _LoadProbe:
    def __enter__(self) -> _LoadProbe:
        self._start = _cpu_ticks()
        self._t0 = time.perf_counter()
        self.load = MachineLoad()
        return self

    def __exit__(self, *exc: object) -> None:
        end = _cpu_ticks()
        seconds = time.perf_counter() - self._t0
        loadavg = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        if self._start is None or end is None or end[0] <= self._start[0]:
            self.load = MachineLoad(loadavg_1m=round(loadavg, 2), seconds=round(seconds, 2))
            return
        total, busy, steal, ours = (b - a for a, b in zip(self._start, end, strict=True))
        self.load = MachineLoad(
            loadavg_1m=round(loadavg, 2),
            others_cpu=round(max(0.0, busy - ours) / total, 3),
            steal=round(steal / total, 3),
            seconds=round(seconds, 2),
        )


def _timed_min(fn: Callable[[], object], budget_s: float, min_reps: int = 2, max_reps: int = 50) -> float:
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
    rather than randn + quantization, which took ~9 s for the ~550 MB involved on a busy box.
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


def _bytes_per_weight(fmt: str) -> float:
    if fmt == "int4":
        from . import kernels

        # ours: one fp32 scale per 32 weights; torch's op: a bf16 scale and zero per group
        ours = kernels.active_isa() != kernels.TORCH_OP
        return 0.5 + (4.0 / kernels.BLOCK if ours else 4.0 / INT4_GROUP_SIZE)
    return {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "w8a8": 1.0}[fmt]


def weight_bytes_per_token(fmt: str, dims: LayerDims | None = None) -> float:
    """Weight bytes one decoded token reads in `fmt`: all layers' linears + the lm_head."""
    dims = dims or LayerDims()
    params = dims.num_layers * dims.layer_params() + dims.vocab * dims.hidden
    return params * _bytes_per_weight(check_format(fmt))


def bandwidth_floor_s(fmt: str, bandwidth_gbs: float, dims: LayerDims | None = None) -> float:
    """Lower bound on decode s/token: weight bytes per token / memory read bandwidth."""
    return weight_bytes_per_token(fmt, dims) / (bandwidth_gbs * 1e9)


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

    Interleaving matters on a shared 2-core box: a neighbour's burst then slows one round of
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
                lin.prefill_dtype = _PREFILL_DTYPES[int8_prefill]

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


def _pick(timings: dict[str, float]) -> str:
    """Fastest format, unless a more precise one is within PRECISION_MARGIN of it."""
    fastest = min(timings.values())
    for fmt in NEAR_LOSSLESS:  # most precise first
        if fmt in timings and timings[fmt] <= fastest * (1 + PRECISION_MARGIN):
            return fmt
    return min(timings, key=timings.__getitem__)


_CACHE_VERSION = 2  # fused layer shapes, batch-8 and prefill in the verdict, machine-load evidence


def _cache_entry_key(cpu_key: str, threads: int, dims: LayerDims, candidates: Iterable[str]) -> str:
    d = asdict(dims)
    dims_sig = ",".join(f"{k}={d[k]}" for k in sorted(d))
    from vision.engine import kernels

    # int8 timings belong to the int8 implementation that ran them (engine kernels or torch's op)
    return f"v{_CACHE_VERSION}|{cpu_key}|threads={threads}|{dims_sig}|{'+'.join(candidates)}|int8={kernels.identity()}"


def _load_cache(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("format cache %s unreadable (%s); measuring again", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _store_cache(path: Path, key: str, choice: FormatChoice) -> None:
    data = _load_cache(path)
    entry = asdict(choice)
    entry.pop("from_cache")
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)  # atomic: two workers starting together never see half a file
    except OSError as exc:
        log.warning("could not write format cache %s: %s", path, exc)


def _model_sources(model: nn.Module, dims: LayerDims, copies: int):
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


def _measure(
    dims: LayerDims, candidates: tuple[str, ...], budget_s: float, copies: int, model: nn.Module | None
) -> FormatChoice:
    """One measurement: every candidate's decode (M=1, M=8), prefill and vision timings, in rounds."""
    start = time.perf_counter()
    sources, vision_sources = _model_sources(model, dims, copies) if model is not None else (None, None)
    decode_layer: dict[str, float] = dict.fromkeys(candidates, math.inf)
    decode_m8: dict[str, float] = dict.fromkeys(candidates, math.inf)
    prefill: dict[str, float] = dict.fromkeys(candidates, math.inf)
    vision: dict[str, float] = dict.fromkeys(candidates, math.inf)
    int8_prefill: dict[str, float] = dict.fromkeys(_PREFILL_DTYPES, math.inf) if "int8" in candidates else {}
    probes = {"fp32": _ActivationProbe(torch.float32, dims), "bf16": _ActivationProbe(torch.bfloat16, dims)}
    act: dict[str, float] = dict.fromkeys(probes, math.inf)
    with torch.no_grad():
        benches = [_FormatBench(f, dims, copies, sources, vision_sources) for f in candidates]
        # Round 0 is a warm-up (oneDNN primitive creation, first touch). Then timed rounds, at
        # least _MIN_TIMED_ROUNDS, until the budget is spent and the latest round alone agrees
        # with the verdict of the mins (a neighbour's burst can flip a close call), but never
        # past twice the budget. Keep each format's min: neighbours only ever add time.
        for rnd in range(_MAX_ROUNDS):
            round_start = time.perf_counter()
            this_d1: dict[str, float] = {}
            this_v: dict[str, float] = {}
            for b in benches:
                this_d1[b.fmt], d8, this_v[b.fmt] = b.decode(1), b.decode(8), b.vision_mlp()
                path = "packed"
                if b.fmt == "int8":
                    # An int8 model runs many-row calls on whichever path is fastest.
                    paths = {p: this_v[b.fmt] if p == "packed" else b.vision_mlp(p) for p in _PREFILL_DTYPES}
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
            if rnd < _MIN_TIMED_ROUNDS or elapsed + (now - round_start) < budget_s:
                continue
            agrees = _pick(this_d1) == _pick(decode_layer) and _pick(this_v) == _pick(vision)
            if agrees or elapsed > 2 * budget_s:
                break
        del benches
    best_int8_prefill = min(int8_prefill, key=int8_prefill.__getitem__) if int8_prefill else "packed"
    # lm_head: same bandwidth-bound GEMV regime, so scale the layer time by its parameter count
    # (allocating a real 151936x2048 fp32 matrix would cost 1.2 GB and most of the budget).
    head_layers = dims.vocab * dims.hidden / dims.layer_params()
    decode_token = {f: t * (dims.num_layers + head_layers) for f, t in decode_layer.items()}
    decode8_step = {f: t * (dims.num_layers + head_layers) for f, t in decode_m8.items()}
    prefill_token = {f: t * dims.num_layers / PREFILL_ROWS for f, t in prefill.items()}
    score = {
        f: WORKLOAD_PROMPT_TOKENS * prefill_token[f]
        + WORKLOAD_ALONE_TOKENS * decode_token[f]
        + WORKLOAD_BATCH8_TOKENS * decode8_step[f] / 8
        for f in candidates
    }
    # bf16 activations only when clearly faster: fp32 is the more precise choice.
    activations = "bf16" if act["bf16"] * (1 + PRECISION_MARGIN) < act["fp32"] else "fp32"
    return FormatChoice(
        lm_format=_pick(score),
        vision_format=_pick(vision),
        decode_layer_s=decode_layer,
        decode_layer_m8_s=decode_m8,
        decode_token_s=decode_token,
        decode8_step_s=decode8_step,
        prefill_token_s=prefill_token,
        vision_gemm_s=vision,
        int8_prefill_s=int8_prefill,
        int8_prefill=best_int8_prefill,
        score_s=score,
        activations=activations,
        activation_probe_s=act,
        measured_s=time.perf_counter() - start,
        source=f"weights of {getattr(model, 'name_or_path', '') or 'the loaded model'}"
        if sources
        else "synthetic",
    )


def choose_formats(
    dims: LayerDims | None = None,
    *,
    candidates: tuple[str, ...] = ("fp32", "bf16", "int8"),
    cache_path: Path | None = None,
    budget_s: float = 2.0,
    model: nn.Module | None = None,
    force: bool = False,
    pause_s: float = 2.0,
) -> FormatChoice:
    """Pick the formats: the language model's by WORKLOAD (prefill + batch-1 and batch-8 decode),
    the vision tower's by its MLP, and a quantized model's activation dtype by the probe.

    Times this CPU with the current torch thread count, on `model`'s own first layers when given (a
    loaded float model: the engine passes it) or on constant weights of `dims`' shapes. A cached
    verdict for the same CPU key, thread count, dims and candidates is returned without measuring
    (`from_cache=True`) unless `force`. The machine's load is recorded beside the timings; a
    measurement taken while other processes use more than BUSY_OTHERS of the CPUs (or the
    hypervisor steals more than BUSY_STEAL) is repeated after `pause_s`, up to MAX_ATTEMPTS times,
    and a verdict that never was calm is used but not cached, so the next start measures again.
    int4 and w8a8 are never chosen automatically: asking for them here raises ValueError.
    """
    if model is not None:
        dims = LayerDims.of_model(model)
    dims = dims or LayerDims()
    for fmt in candidates:
        check_format(fmt)
        if fmt not in NEAR_LOSSLESS:
            raise ValueError(
                f"auto only chooses among {', '.join(NEAR_LOSSLESS)}; {fmt!r} must be set explicitly"
            )
    if not candidates:
        raise ValueError("choose_formats needs at least one candidate format")

    cpu = cpu_description()
    threads = torch.get_num_threads()
    path = (cache_path or DEFAULT_CACHE_PATH).expanduser()
    key = _cache_entry_key(cpu.key, threads, dims, candidates)
    cached = None if force else _load_cache(path).get(key)
    if cached is not None:
        try:
            return FormatChoice(**cached, from_cache=True)
        except TypeError as exc:  # written by an older version of this module
            log.warning("format cache entry outdated (%s); measuring again", exc)

    llc = cpu.llc_bytes or _FALLBACK_LLC
    # Same number of distinct layer copies for every format, enough that the smallest
    # format's weights exceed the LLC LLC_MULTIPLE times (Qwen3-VL-2B int8: 3 x 50 MB vs
    # 32 MB L3). Equal op counts matter: with a neighbour busy on one of two cores, each
    # parallel op can stall a scheduler slice waiting for its second thread, and a format
    # timed with 3x the ops lost to fp32 for that reason alone (fp32 478 / int8 563 ms per
    # token in one such run, vs 366 / 92 ms undisturbed). Peak: ~1 GB for a few seconds.
    smallest = min(_bytes_per_weight(f) for f in candidates) * dims.layer_params()
    copies = max(1, min(_MAX_COPIES, math.ceil(LLC_MULTIPLE * llc / smallest)))
    if model is not None:
        copies = min(copies, dims.num_layers)
    best: FormatChoice | None = None
    tuning_started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with _LoadProbe() as probe:
            choice = _measure(dims, candidates, budget_s, copies, model)
        choice.load, choice.calm, choice.attempts = asdict(probe.load), probe.load.calm, attempt
        if best is None or choice.calm or probe.load.others_cpu < best.load["others_cpu"]:
            best = choice
        if choice.calm:
            break
        # A machine so busy that one measurement overran its budget several times over will not
        # calm down in a few seconds: stop retrying (seen: 60 s per attempt at load average 30).
        again = (
            attempt < MAX_ATTEMPTS and time.perf_counter() - tuning_started < MAX_TUNING_BUDGETS * budget_s
        )
        log.warning(
            "weight-format measurement %d/%d taken on a busy machine (%s); %s",
            attempt,
            MAX_ATTEMPTS,
            probe.load,
            "measuring again" if again else "using it without caching it",
        )
        if not again:
            break
        time.sleep(pause_s)
    best.attempts = attempt
    best.cpu_key, best.threads = cpu.key, threads
    best.measured_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    log.info("weight formats chosen: %s", best.summary())
    if best.calm:
        _store_cache(path, key, best)
    return best


def formats_for(
    setting: str, *, cache_path: Path | None = None, budget_s: float = 2.0, model: nn.Module | None = None
) -> tuple[str, str, FormatChoice | None]:
    """(lm, vision, choice): the setting resolved, timing this CPU only if a part is "auto"."""
    lm, vision = resolve_formats(setting)
    if "auto" not in (lm, vision):
        return lm, vision, None
    choice = choose_formats(cache_path=cache_path, budget_s=budget_s, model=model)
    return (
        choice.lm_format if lm == "auto" else lm,
        choice.vision_format if vision == "auto" else vision,
        choice,
    )


def measure_memory_bandwidth(bytes_: int | None = None, reps: int = 5) -> float:
    """Read bandwidth in GB/s: a torch sum over a buffer far larger than the last-level cache.

    Default size is max(512 MiB, 16 x LLC). A sum does one add per 4 bytes, far below what
    two AVX-512 cores can do, so the loop waits on memory; the min over `reps` filters out
    neighbours on a shared box.
    """
    llc = cpu_description().llc_bytes or _FALLBACK_LLC
    size = bytes_ or max(512 * 2**20, 16 * llc)
    buf = torch.ones(size // 4, dtype=torch.float32)
    t = _timed_min(lambda: buf.sum(), budget_s=0.0, min_reps=reps, max_reps=reps)
    from . import kernels

    kernels.release_thread_pool()  # e.g. a bench's main thread: leave no pool to slow the engine's
    return buf.numel() * 4 / t / 1e9
