"""`auto` weight formats: the choice policy. Which format the language model, the vision tower and
a quantized model's activations get on this CPU, decided from timings of the model's own layer
shapes (`autotune_timing`), taken while the machine is calm (`machine_load`) and cached per CPU
(`autotune_cache`).

Why measure: the right answer flips between CPUs. With avx512_bf16, bf16 decode is about twice
fp32's speed; on an AVX2-only CPU bf16 GEMV is slower than fp32 and bf16 GEMM is emulated
(ruinous for the vision tower). So the verdict is taken per CPU (`CpuInfo.key`) by timing, in
about two seconds, and cached in a JSON file. docs/benchmarks.md has measured verdicts.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from vision.engine.autotune_cache import DEFAULT_CACHE_PATH, cache_key, load_cache, store_cache
from vision.engine.autotune_timing import (
    PREFILL_DTYPES,
    PREFILL_ROWS,
    FormatTimings,
    LayerDims,
    bytes_per_weight,
    measure,
)
from vision.engine.cpuinfo import cpu_description
from vision.engine.machine_load import LoadProbe, MachineLoad
from vision.engine.quant import NEAR_LOSSLESS, check_format
from vision.engine.types import FormatVerdict

__all__ = ["DEFAULT_CACHE_PATH", "FormatChoice", "LayerDims", "LoadProbe", "MachineLoad", "choose_formats"]

log = logging.getLogger(__name__)

# A more precise format wins unless a less precise one is faster by more than this: timings on a
# shared machine jitter by a few percent, and precision is worth a small price.
PRECISION_MARGIN = 0.05
# Total weights streamed per decode pass, in units of the last-level cache.
LLC_MULTIPLE = 4
_FALLBACK_LLC = 32 * 2**20
_MAX_COPIES = 16  # small dims would otherwise need thousands of copies of a few KB each
# The request the LM format is chosen for: a document page's prompt, then an answer of which half is
# decoded alone and half beside seven other streams. Prefill and batched decode count, not only
# batch-1 decode: int8's packed kernel wins batch-1 decode and can lose the rest.
WORKLOAD_PROMPT_TOKENS = 1000
WORKLOAD_ALONE_TOKENS = 64
WORKLOAD_BATCH8_TOKENS = 64
# A measurement on a busy machine (machine_load) is repeated up to MAX_ATTEMPTS times, and no new
# attempt starts once this many measurement budgets are spent.
MAX_ATTEMPTS = 3
MAX_TUNING_BUDGETS = 5


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
        return PREFILL_DTYPES[self.int8_prefill]

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


def _pick(timings: dict[str, float]) -> str:
    """Fastest format, unless a more precise one is within PRECISION_MARGIN of it."""
    fastest = min(timings.values())
    for fmt in NEAR_LOSSLESS:  # most precise first
        if fmt in timings and timings[fmt] <= fastest * (1 + PRECISION_MARGIN):
            return fmt
    return min(timings, key=timings.__getitem__)


def _decide(dims: LayerDims, candidates: tuple[str, ...], timings: FormatTimings) -> FormatChoice:
    """The verdict of one measurement: per-token estimates, the workload score, the picks."""
    int8_prefill = timings.int8_prefill_s
    best_int8_prefill = min(int8_prefill, key=int8_prefill.__getitem__) if int8_prefill else "packed"
    # lm_head: same bandwidth-bound GEMV regime, so scale the layer time by its parameter count
    # (allocating a real 151936x2048 fp32 matrix would cost 1.2 GB and most of the budget).
    head_layers = dims.vocab * dims.hidden / dims.layer_params()
    decode_token = {f: t * (dims.num_layers + head_layers) for f, t in timings.decode_layer_s.items()}
    decode8_step = {f: t * (dims.num_layers + head_layers) for f, t in timings.decode_layer_m8_s.items()}
    prefill_token = {f: t * dims.num_layers / PREFILL_ROWS for f, t in timings.prefill_layer_s.items()}
    score = {
        f: WORKLOAD_PROMPT_TOKENS * prefill_token[f]
        + WORKLOAD_ALONE_TOKENS * decode_token[f]
        + WORKLOAD_BATCH8_TOKENS * decode8_step[f] / 8
        for f in candidates
    }
    act = timings.activation_probe_s
    # bf16 activations only when clearly faster: fp32 is the more precise choice.
    activations = "bf16" if act["bf16"] * (1 + PRECISION_MARGIN) < act["fp32"] else "fp32"
    return FormatChoice(
        lm_format=_pick(score),
        vision_format=_pick(timings.vision_gemm_s),
        decode_layer_s=timings.decode_layer_s,
        decode_layer_m8_s=timings.decode_layer_m8_s,
        decode_token_s=decode_token,
        decode8_step_s=decode8_step,
        prefill_token_s=prefill_token,
        vision_gemm_s=timings.vision_gemm_s,
        int8_prefill_s=int8_prefill,
        int8_prefill=best_int8_prefill,
        score_s=score,
        activations=activations,
        activation_probe_s=act,
        measured_s=timings.measured_s,
        source=timings.source,
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
    key = cache_key(cpu.key, threads, dims, candidates)
    cached = None if force else load_cache(path).get(key)
    if cached is not None:
        try:
            return FormatChoice(**cached, from_cache=True)
        except TypeError as exc:  # written by an older version of this module
            log.warning("format cache entry outdated (%s); measuring again", exc)

    llc = cpu.llc_bytes or _FALLBACK_LLC
    # Same number of distinct layer copies for every format, enough that the smallest
    # format's weights exceed the LLC LLC_MULTIPLE times (Qwen3-VL-2B int8: 3 x 50 MB vs
    # 32 MB L3). Equal op counts matter: with a neighbour busy on one of the cores, each
    # parallel op can stall a scheduler slice waiting for its other threads, so a format timed
    # with more ops would lose for that reason alone. Peak: ~1 GB for a few seconds.
    smallest = min(bytes_per_weight(f) for f in candidates) * dims.layer_params()
    copies = max(1, min(_MAX_COPIES, math.ceil(LLC_MULTIPLE * llc / smallest)))
    if model is not None:
        copies = min(copies, dims.num_layers)
    best: FormatChoice | None = None
    tuning_started = time.perf_counter()
    for attempt in range(1, MAX_ATTEMPTS + 1):
        with LoadProbe() as probe:
            choice = _decide(dims, candidates, measure(dims, candidates, budget_s, copies, model, _pick))
        choice.load, choice.calm, choice.attempts = asdict(probe.load), probe.load.calm, attempt
        if best is None or choice.calm or probe.load.others_cpu < best.load["others_cpu"]:
            best = choice
        if choice.calm:
            break
        # A machine so busy that one measurement overran its budget several times over will not
        # calm down in a few seconds: stop retrying.
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
        entry = asdict(best)
        entry.pop("from_cache")
        store_cache(path, key, entry)
    return best
