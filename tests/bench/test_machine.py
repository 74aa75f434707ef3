"""The benchmarks' machine helpers: memory bandwidth and the decode floor it gives."""

import pytest

from bench.machine import bandwidth_floor_s, measure_memory_bandwidth, weight_bytes_per_token
from vision.engine.autotune_timing import LayerDims


def test_bandwidth_and_floor() -> None:
    bw = measure_memory_bandwidth(64 * 2**20, reps=2)
    assert 0.1 < bw < 2000
    dims = LayerDims()
    # Qwen3-VL-2B LM: 28 x 50.3M linear params + 311M lm_head = 1.72G weights per token.
    assert weight_bytes_per_token("int8", dims) == pytest.approx(1.72e9, rel=0.01)
    assert bandwidth_floor_s("fp32", 20.0) == pytest.approx(4 * bandwidth_floor_s("int8", 20.0))
