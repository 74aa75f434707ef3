"""Fused projections, made once at load: fewer, larger matmuls per decoder layer.

Each Qwen3-VL text layer has seven linears: q, k, v, o, gate, up, down. q/k/v read the same input,
and so do gate/up, so their weights are concatenated along the output dimension into `qkv_proj`
(2048 -> 4096 for the 2B model) and `gate_up_proj` (2048 -> 12288): four matmuls per layer instead
of seven, and the runner splits the outputs with views.

This runs on the float weights, before `quant.quantize_qwen3vl`, so it works with any linear
implementation: a quantizer sees two ordinary `nn.Linear`s. Per-output-channel int8 scales of a
fused weight are exactly the concatenated scales of its parts (each row keeps its own), and int4
groups run along the input dimension, which fusion does not touch, so a fused quantized layer
computes the same numbers as the separate ones did.

A fused model no longer runs through transformers' own `forward` (it calls `q_proj`); only the
engine's runner drives it, which handles fused and unfused layers alike.
"""

from __future__ import annotations

import torch
from torch import nn


def _concat(parts: list[nn.Linear]) -> nn.Linear:
    first = parts[0]
    has_bias = first.bias is not None
    fused = nn.Linear(first.in_features, sum(p.out_features for p in parts), bias=has_bias, device="meta")
    fused.weight = nn.Parameter(torch.cat([p.weight.detach() for p in parts]), requires_grad=False)
    if has_bias:
        fused.bias = nn.Parameter(torch.cat([p.bias.detach() for p in parts]), requires_grad=False)
    return fused


@torch.no_grad()
def fuse_projections(model: nn.Module) -> int:
    """Fuse q/k/v and gate/up of every language-model layer in place; returns layers fused.

    Layers already fused, or whose projections are not plain float `nn.Linear`s (already
    quantized), are left alone.
    """
    fused = 0
    for layer in model.model.language_model.layers:
        attn, mlp = layer.self_attn, layer.mlp
        qkv = [getattr(attn, name, None) for name in ("q_proj", "k_proj", "v_proj")]
        gate_up = [getattr(mlp, name, None) for name in ("gate_proj", "up_proj")]
        if not all(type(p) is nn.Linear for p in qkv + gate_up):
            continue
        attn.qkv_proj = _concat(qkv)
        mlp.gate_up_proj = _concat(gate_up)
        for name in ("q_proj", "k_proj", "v_proj"):
            delattr(attn, name)
        for name in ("gate_proj", "up_proj"):
            delattr(mlp, name)
        fused += 1
    return fused
