"""Shared helpers of the kernel tests (test_kernels_isa, test_kernels_linears, test_kernels_ops):
the kernel paths this CPU runs, a seeded linear case, each runnable path's output, and the bounds
several of them share."""

from __future__ import annotations

import torch
from torch import nn

from vision.engine import kernels
from vision.engine.linears import Int8Linear

_FLAGS = kernels.cpu_flags()
RUNNABLE = kernels.cpu_isas()

FLASH_CPU = kernels.NEEDS["avx512vnni"] | kernels.BF16_NEEDS <= _FLAGS
NO_BF16 = "this CPU lacks AVX-512 BF16 (the op refuses, checked above)"

# Accuracy of int4 round-to-nearest vs fp32, for N(0, sigma) weights (as test_quant's _linear):
# one scale per block of 32 along K, step d = |signed extreme| / 8. The largest |w| of 32 Gaussian
# values is ~2.04 sigma on average, so d ~ 0.255 sigma and rounding errs by U(-d/2, d/2): std
# d / sqrt(12) ~ 0.074 sigma. Values of the opposite sign beyond 7.5 d clamp to 7 and err by up to
# a further d; with that the measured weight error is 0.084-0.094 (2048x2048: 0.086). As in
# test_quant, independent errors add in quadrature over K, so the relative output error is the
# relative weight error, ~0.09, and the int8 activation blocks add ~0.005 in quadrature. Bound
# 0.12. A lower bound too: an error below 0.06 would mean the layer is not really 4-bit.
INT4_BOUNDS = (0.06, 0.12)


def _case(n: int, k: int, rows: int, bias: bool = True) -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(n * 7919 + k * 31 + rows)
    lin = nn.Linear(k, n, bias=bias)
    nn.init.normal_(lin.weight, std=0.02)
    return lin, torch.randn(rows, k)


def _run_paths(lin: nn.Linear, x: torch.Tensor) -> dict[str, torch.Tensor]:
    layer = Int8Linear.from_linear(lin)
    assert layer.packed_layout
    outs = {}
    for isa in RUNNABLE:
        with kernels.use_isa(isa):
            outs[isa] = layer(x)
    return outs
