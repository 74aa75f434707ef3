"""What the machine can do, for the benchmarks' floors and ceilings: memory read bandwidth, the
weight bytes a decoded token reads (and so the bandwidth floor of decode), and the int8
multiply-add peak of a kernel path. Benchmark-only: the engine never calls these."""

from __future__ import annotations

import time

from vision.engine.autotune_timing import LayerDims, bytes_per_weight, timed_min
from vision.engine.quant import check_format

_FALLBACK_LLC = 32 * 2**20


def measure_memory_bandwidth(bytes_: int | None = None, reps: int = 5) -> float:
    """Read bandwidth in GB/s: a torch sum over a buffer far larger than the last-level cache.

    Default size is max(512 MiB, 16 x LLC). A sum does one add per 4 bytes, far below what the
    cores can do, so the loop waits on memory; the min over `reps` filters out neighbours on a
    shared machine.
    """
    import torch

    from vision.engine import kernels
    from vision.engine.cpuinfo import cpu_description

    llc = cpu_description().llc_bytes or _FALLBACK_LLC
    size = bytes_ or max(512 * 2**20, 16 * llc)
    buf = torch.ones(size // 4, dtype=torch.float32)
    t = timed_min(lambda: buf.sum(), budget_s=0.0, min_reps=reps, max_reps=reps)
    kernels.release_thread_pool()  # e.g. a bench's main thread: leave no pool to slow the engine's
    return buf.numel() * 4 / t / 1e9


def weight_bytes_per_token(fmt: str, dims: LayerDims | None = None) -> float:
    """Weight bytes one decoded token reads in `fmt`: all layers' linears + the lm_head."""
    dims = dims or LayerDims()
    params = dims.num_layers * dims.layer_params() + dims.vocab * dims.hidden
    return params * bytes_per_weight(check_format(fmt))


def bandwidth_floor_s(fmt: str, bandwidth_gbs: float, dims: LayerDims | None = None) -> float:
    """Lower bound on decode s/token: weight bytes per token / memory read bandwidth."""
    return weight_bytes_per_token(fmt, dims) / (bandwidth_gbs * 1e9)


def int8_peak_gops(isa: str | None = None, seconds: float = 0.25) -> float | None:
    """This CPU's int8 multiply-add peak on kernel path `isa` (default: the active one), in GOPS
    (two per multiply-add), over torch's threads: every thread runs the tiles' dot product on
    registers only (no memory traffic), so no GEMM on this path can be faster. Vision and prefill
    are bound by it; `bench batching` compares their measured rate with it. None without the
    kernels or on paths with no vector dot (ref, torch)."""
    from vision.engine import kernels

    mod = kernels.module()
    name = isa or kernels.active_isa()
    if mod is None or name not in ("avx2", "avxvnni", "avx512vnni") or name not in kernels.supported_isas():
        return None
    index = kernels.isa_index(name)
    iters = 1 << 16
    mod.int8_dot_peak(index, iters)  # wake the pool, settle the clocks
    while True:
        start = time.perf_counter()
        macs = mod.int8_dot_peak(index, iters)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds or iters >= 1 << 34:
            return 2 * macs / elapsed / 1e9
        iters *= 2
