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

from vision.engine.cpuinfo import cpu_description
from vision.engine.quant import (
    FORMATS,
    INT4_GROUP_SIZE,
    NEAR_LOSSLESS,
    Int8Linear,
    W8A8Linear,
    check_format,
    quantize_linear,
)

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

    def decode_shapes(self) -> list[tuple[int, int]]:
        """(out, in) of one decoder layer's linears: q, k, v, o, gate, up, down."""
        h, i = self.hidden, self.intermediate
        return [(self.q_out, h), (self.kv_out, h), (self.kv_out, h), (h, self.q_out), (i, h), (i, h), (h, i)]

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
    decode_layer_s: dict[str, float] = field(default_factory=dict)  # fmt -> s, one layer's 7 linears, M=1
    decode_layer_m4_s: dict[str, float] = field(default_factory=dict)  # same at M=4 (batched decode)
    decode_token_s: dict[str, float] = field(
        default_factory=dict
    )  # fmt -> est. s/token, all layers + lm_head
    vision_gemm_s: dict[str, float] = field(default_factory=dict)  # fmt -> s, fc1+fc2 at vision_tokens rows
    # int8 many-row path -> s for the same vision MLP ("packed", "bf16"/"fp32" = dequant + GEMM)
    int8_prefill_s: dict[str, float] = field(default_factory=dict)
    int8_prefill: str = "packed"  # the fastest of int8_prefill_s; vision_gemm_s["int8"] uses it
    cpu_key: str = ""  # CpuInfo.key the verdict belongs to
    threads: int = 1  # torch threads during the measurement
    measured_s: float = 0.0  # wall time the measurement took
    from_cache: bool = False  # True when read from the cache file, not measured now

    @property
    def int8_prefill_dtype(self) -> torch.dtype | None:
        """For quantize_qwen3vl(..., int8_prefill_dtype=...)."""
        return _PREFILL_DTYPES[self.int8_prefill]

    def summary(self) -> str:
        dec = ", ".join(f"{k} {v * 1e3:.0f}ms" for k, v in self.decode_token_s.items())
        vis = ", ".join(f"{k} {v * 1e3:.1f}ms" for k, v in self.vision_gemm_s.items())
        src = "cache" if self.from_cache else f"measured in {self.measured_s:.2f}s"
        return (
            f"lm={self.lm_format} vision={self.vision_format} ({src}; decode/token: {dec}; "
            f"vision MLP: {vis}; int8 prefill {self.int8_prefill}; {self.threads} threads; {self.cpu_key})"
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
    return {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "w8a8": 1.0, "int4": 0.5 + 4.0 / INT4_GROUP_SIZE}[fmt]


def weight_bytes_per_token(fmt: str, dims: LayerDims | None = None) -> float:
    """Weight bytes one decoded token reads in `fmt`: all layers' linears + the lm_head."""
    dims = dims or LayerDims()
    params = dims.num_layers * dims.layer_params() + dims.vocab * dims.hidden
    return params * _bytes_per_weight(check_format(fmt))


def bandwidth_floor_s(fmt: str, bandwidth_gbs: float, dims: LayerDims | None = None) -> float:
    """Lower bound on decode s/token: weight bytes per token / memory read bandwidth."""
    return weight_bytes_per_token(fmt, dims) / (bandwidth_gbs * 1e9)


class _FormatBench:
    """Weights of one format, built once, timed in rounds interleaved with the other formats.

    Interleaving matters on a shared 2-core box: a neighbour's burst then slows one round of
    every format instead of all rounds of one format, and the per-format min stays comparable.
    """

    def __init__(self, fmt: str, dims: LayerDims, copies: int) -> None:
        self.fmt, self.dims, self.copies = fmt, dims, copies
        self.layers = [[_fake_linear(o, i, fmt) for o, i in dims.decode_shapes()] for _ in range(self.copies)]
        self.vision = [_fake_linear(o, i, fmt) for o, i in dims.vision_shapes()]
        act = _act_dtype(fmt)
        self.x_vision = torch.randn(dims.vision_tokens, dims.vision_hidden, dtype=act)
        self.x = {
            rows: (torch.randn(rows, dims.hidden, dtype=act), torch.randn(rows, dims.intermediate, dtype=act))
            for rows in (1, 4)
        }

    def decode(self, rows: int) -> float:
        """Seconds for one decoder layer's linears at `rows` tokens, weights streamed from DRAM."""
        x_h, x_i = self.x[rows]
        t0 = time.perf_counter()
        for layer in self.layers:
            for lin in layer:
                lin(x_i if lin.in_features == self.dims.intermediate else x_h)
        return (time.perf_counter() - t0) / self.copies

    def vision_mlp(self, int8_prefill: str = "packed") -> float:
        fc1, fc2 = self.vision
        for lin in self.vision:
            if isinstance(lin, Int8Linear):
                lin.prefill_dtype = _PREFILL_DTYPES[int8_prefill]
        t0 = time.perf_counter()
        fc2(fc1(self.x_vision))
        return time.perf_counter() - t0


def _pick(timings: dict[str, float]) -> str:
    """Fastest format, unless a more precise one is within PRECISION_MARGIN of it."""
    fastest = min(timings.values())
    for fmt in NEAR_LOSSLESS:  # most precise first
        if fmt in timings and timings[fmt] <= fastest * (1 + PRECISION_MARGIN):
            return fmt
    return min(timings, key=timings.__getitem__)


def _cache_entry_key(cpu_key: str, threads: int, dims: LayerDims, candidates: Iterable[str]) -> str:
    d = asdict(dims)
    dims_sig = ",".join(f"{k}={d[k]}" for k in sorted(d))
    from vision.engine import kernels

    # int8 timings belong to the int8 implementation that ran them (engine kernels or torch's op)
    return f"{cpu_key}|threads={threads}|{dims_sig}|{'+'.join(candidates)}|int8={kernels.identity()}"


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


def choose_formats(
    dims: LayerDims | None = None,
    *,
    candidates: tuple[str, ...] = ("fp32", "bf16", "int8"),
    cache_path: Path | None = None,
    budget_s: float = 2.0,
) -> FormatChoice:
    """Pick the fastest near-lossless format for decode (LM) and for the vision tower.

    Times this CPU with the current torch thread count; a cached verdict for the same CPU key,
    thread count, dims and candidates is returned without measuring (`from_cache=True`).
    int4 and w8a8 are never chosen automatically: asking for them here raises ValueError.
    """
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
    cached = _load_cache(path).get(key)
    if cached is not None:
        try:
            return FormatChoice(**cached, from_cache=True)
        except TypeError as exc:  # written by an older version of this module
            log.warning("format cache entry outdated (%s); measuring again", exc)

    start = time.perf_counter()
    llc = cpu.llc_bytes or _FALLBACK_LLC
    decode_layer: dict[str, float] = dict.fromkeys(candidates, math.inf)
    decode_m4: dict[str, float] = dict.fromkeys(candidates, math.inf)
    vision: dict[str, float] = dict.fromkeys(candidates, math.inf)
    int8_prefill: dict[str, float] = dict.fromkeys(_PREFILL_DTYPES, math.inf) if "int8" in candidates else {}
    with torch.no_grad():
        # Same number of distinct layer copies for every format, enough that the smallest
        # format's weights exceed the LLC LLC_MULTIPLE times (Qwen3-VL-2B int8: 3 x 50 MB vs
        # 32 MB L3). Equal op counts matter: with a neighbour busy on one of two cores, each
        # parallel op can stall a scheduler slice waiting for its second thread, and a format
        # timed with 3x the ops lost to fp32 for that reason alone (fp32 478 / int8 563 ms per
        # token in one such run, vs 366 / 92 ms undisturbed). Peak: ~1 GB for a few seconds.
        smallest = min(_bytes_per_weight(f) for f in candidates) * dims.layer_params()
        copies = max(1, min(_MAX_COPIES, math.ceil(LLC_MULTIPLE * llc / smallest)))
        benches = [_FormatBench(f, dims, copies) for f in candidates]
        # Round 0 is a warm-up (oneDNN primitive creation, first touch). Then timed rounds, at
        # least _MIN_TIMED_ROUNDS, until the budget is spent and the latest round alone agrees
        # with the verdict of the mins (a neighbour's burst can flip a close call), but never
        # past twice the budget. Keep each format's min: neighbours only ever add time.
        for rnd in range(_MAX_ROUNDS):
            round_start = time.perf_counter()
            this_d1: dict[str, float] = {}
            this_v: dict[str, float] = {}
            for b in benches:
                this_d1[b.fmt], d4, this_v[b.fmt] = b.decode(1), b.decode(4), b.vision_mlp()
                if b.fmt == "int8":
                    # An int8 model runs many-row calls on whichever path is fastest.
                    paths = {p: this_v[b.fmt] if p == "packed" else b.vision_mlp(p) for p in _PREFILL_DTYPES}
                    this_v[b.fmt] = min(paths.values())
                    if rnd > 0:
                        for p, t in paths.items():
                            int8_prefill[p] = min(int8_prefill[p], t)
                if rnd > 0:
                    decode_layer[b.fmt] = min(decode_layer[b.fmt], this_d1[b.fmt])
                    decode_m4[b.fmt] = min(decode_m4[b.fmt], d4)
                    vision[b.fmt] = min(vision[b.fmt], this_v[b.fmt])
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

    choice = FormatChoice(
        lm_format=_pick(decode_layer),
        vision_format=_pick(vision),
        decode_layer_s=decode_layer,
        decode_layer_m4_s=decode_m4,
        decode_token_s=decode_token,
        vision_gemm_s=vision,
        int8_prefill_s=int8_prefill,
        int8_prefill=best_int8_prefill,
        cpu_key=cpu.key,
        threads=threads,
        measured_s=time.perf_counter() - start,
    )
    log.info("weight formats chosen: %s", choice.summary())
    _store_cache(path, key, choice)
    return choice


def resolve_formats(setting: str) -> tuple[str, str]:
    """Parse the weight-format setting into (lm, vision); either may be "auto".

    Accepts one value for both parts ("auto", "fp32", "bf16", "int8", "int4", "w8a8") or
    "lm=int8,vision=bf16" (a part left out means "auto").
    """
    allowed = ("auto", *FORMATS)
    text = (setting or "").strip().lower()
    if not text:
        raise ValueError(
            f"empty weight-format setting; expected one of {', '.join(allowed)} or 'lm=..,vision=..'"
        )
    if "=" not in text:
        if text not in allowed:
            raise ValueError(f"unknown weight format {setting!r}; expected one of {', '.join(allowed)}")
        return text, text
    parts: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or name not in ("lm", "vision"):
            raise ValueError(
                f"bad weight-format part {item.strip()!r} in {setting!r}; expected lm=<fmt> or vision=<fmt>"
            )
        if name in parts:
            raise ValueError(f"{name!r} given twice in weight-format setting {setting!r}")
        if value not in allowed:
            raise ValueError(
                f"unknown weight format {value!r} for {name} in {setting!r}; expected one of {', '.join(allowed)}"
            )
        parts[name] = value
    return parts.get("lm", "auto"), parts.get("vision", "auto")


def formats_for(
    setting: str, *, cache_path: Path | None = None, budget_s: float = 2.0
) -> tuple[str, str, FormatChoice | None]:
    """(lm, vision, choice): the setting resolved, timing this CPU only if a part is "auto"."""
    lm, vision = resolve_formats(setting)
    if "auto" not in (lm, vision):
        return lm, vision, None
    choice = choose_formats(cache_path=cache_path, budget_s=budget_s)
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
    return buf.numel() * 4 / t / 1e9
