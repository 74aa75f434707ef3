"""The batching bench's ceiling arithmetic (bench/ceiling.py), checked by hand."""

from __future__ import annotations

import pytest

from bench import ceiling

VISION = {
    "hidden_size": 8,
    "intermediate_size": 16,
    "spatial_merge_size": 2,
    "patch_size": 2,
    "in_channels": 3,
    "temporal_patch_size": 2,
    "depth": 2,
    "out_hidden_size": 4,
    "deepstack_visual_indexes": [0],
}
TEXT = {
    "hidden_size": 8,
    "intermediate_size": 12,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 4,
    "num_hidden_layers": 3,
    "vocab_size": 10,
}


def test_vision_flops_by_hand() -> None:
    patches = 8
    embed = 2 * 8 * (3 * 2 * 2 * 2) * 8  # patch pixels -> hidden
    block = 2 * 8 * (4 * 8 * 8 + 2 * 8 * 16) + 4 * 8 * 8 * 8  # linears + attention
    mergers = 2 * (2 * 2 * (32 * 32 + 32 * 4))  # merger + one deepstack merger, 2 merged rows
    assert ceiling.vision_flops(VISION, patches) == embed + 2 * block + mergers


def test_prefill_flops_by_hand() -> None:
    tokens = 5
    linears = 2 * 5 * (8 * 4 * 4 + 8 * 8 + 3 * 8 * 12)  # q, k, v (2 + 2 * 1 heads of 4), o, mlp
    attention = 4 * 8 * 15  # causal: 1 + 2 + ... + 5 keys, 2 heads x 4
    assert ceiling.prefill_flops(TEXT, tokens) == 3 * (linears + attention) + 2 * 10 * 8


def test_batch_ratio_and_the_first_token_it_needs() -> None:
    # 8 requests of 32 tokens, 1 s to the first token, 0.05 s steps alone, 0.08 s for 8
    ratio = ceiling.batch_ratio(8, 32, 1.0, 0.05, 0.08)
    assert ratio == pytest.approx(8 * (1 + 31 * 0.05) / (8 + 31 * 0.08))
    needed = ceiling.first_needed(8, 32, 2.5, 0.05, 0.08)
    assert needed is not None and needed < 1.0
    assert ceiling.batch_ratio(8, 32, needed, 0.05, 0.08) == pytest.approx(2.5)
    # batching decode no better than one at a time: no first token is cheap enough
    assert ceiling.first_needed(8, 32, 2.5, 0.05, 0.4) is None


def test_ceiling_at_the_peak() -> None:
    out = ceiling.ceiling(8, 32, 2.5, first=2.0, step_1=0.05, step_n=0.08, flops=1e12, peak_gops=1000.0)
    assert out["achieved_gops"] == 500.0
    assert out["first_token_at_peak_s"] == 1.0
    assert out["schedule_ceiling"] == round(ceiling.batch_ratio(8, 32, 2.0, 0.05, 0.08), 2)
    assert out["peak_ceiling"] == round(ceiling.batch_ratio(8, 32, 1.0, 0.05, 0.08), 2)
    assert out["peak_ceiling_free_batching"] == round(ceiling.batch_ratio(8, 32, 1.0, 0.05, 0.05), 2)
    assert out["gops_needed"] == round(1e12 / ceiling.first_needed(8, 32, 2.5, 0.05, 0.08) / 1e9, 1)
    assert "peak_ceiling" not in ceiling.ceiling(8, 32, 2.5, 2.0, 0.05, 0.08, 1e12, None)
