"""How far batching can go: the compute ceiling of `bench batching`'s ratio.

Batching shares weight reads, so it speeds up decode (memory-bound: one pass over the weights
serves every running sequence) but not vision or prefill, which are bound by multiply-adds: eight
images cost eight times one image's FLOPs however they are grouped. So with n requests of T
output tokens each,

    one at a time:  n * (c + (T - 1) * d1)
    n together:     >= n * c + (T - 1) * s_n

c is one request's time to its first token (vision + prefill), d1 a decode step of one sequence,
s_n a decode step of n. The ratio of the two is the most batching can give while c stays what it
is. The CPU's int8 multiply-add peak P (`kernels.int8_peak_gops`, a register-only loop) bounds c
from below by the request's FLOPs / P, which gives the ceiling no kernel can pass on this CPU.

Pure arithmetic (no torch): the bench passes measured numbers in; tests check it by hand.
"""

from __future__ import annotations


def vision_flops(vision: dict, patches: int) -> float:
    """FLOPs (2 per multiply-add) of one image's vision tower: patch embedding, `depth` blocks
    (linears and full attention over the image's patches), the merger and the deepstack mergers.
    `vision` is the checkpoint's `vision_config`."""
    h, i = vision["hidden_size"], vision["intermediate_size"]
    merge = vision["spatial_merge_size"] ** 2
    patch_in = vision.get("in_channels", 3) * vision.get("temporal_patch_size", 2) * vision["patch_size"] ** 2
    embed = 2 * patches * patch_in * h
    linears = 2 * patches * (4 * h * h + 2 * h * i)
    attention = 2 * 2 * patches * patches * h  # q k^T and the weighted sum of v, every head
    merged = patches // merge
    mergers = (
        (1 + len(vision.get("deepstack_visual_indexes", [])))
        * 2
        * merged
        * ((merge * h) ** 2 + merge * h * vision["out_hidden_size"])
    )
    return float(embed + vision["depth"] * (linears + attention) + mergers)


def prefill_flops(text: dict, tokens: int) -> float:
    """FLOPs of prefilling `tokens` prompt tokens (causal attention) and the first token's logits.
    `text` is the checkpoint's `text_config`."""
    h, i = text["hidden_size"], text["intermediate_size"]
    heads, kv_heads = text["num_attention_heads"], text["num_key_value_heads"]
    d = text.get("head_dim") or h // heads
    linears = 2 * tokens * (h * (heads + 2 * kv_heads) * d + heads * d * h + 3 * h * i)
    attention = 2 * 2 * heads * d * tokens * (tokens + 1) // 2
    return float(text["num_hidden_layers"] * (linears + attention) + 2 * text["vocab_size"] * h)


def batch_ratio(n: int, tokens: int, first: float, step_1: float, step_n: float) -> float:
    """One-at-a-time time / batched time for n requests whose vision and prefill cost `first`
    seconds each however they are grouped, decode steps `step_1` (one sequence) and `step_n`."""
    alone = n * (first + (tokens - 1) * step_1)
    together = n * first + (tokens - 1) * step_n
    return alone / together


def first_needed(n: int, tokens: int, target: float, step_1: float, step_n: float) -> float | None:
    """The time to first token per request at which `batch_ratio` reaches `target` (None: the
    decode steps alone cannot give it, whatever the first token costs)."""
    if target <= 1:
        return None
    c = (tokens - 1) * (n * step_1 - target * step_n) / (n * (target - 1))
    return c if c > 0 else None


def ceiling(
    n: int,
    tokens: int,
    target: float,
    first: float,
    step_1: float,
    step_n: float,
    flops: float,
    peak_gops: float | None,
) -> dict:
    """The numbers `bench batching` prints under its table (see the module docstring)."""
    out = {
        "first_token_s": round(first, 3),
        "decode_step_1_s": round(step_1, 6),
        f"decode_step_{n}_s": round(step_n, 6),
        "flops_per_request_g": round(flops / 1e9, 1),
        "achieved_gops": round(flops / first / 1e9, 1),
        "schedule_ceiling": round(batch_ratio(n, tokens, first, step_1, step_n), 2),
        "int8_peak_gops": None if peak_gops is None else round(peak_gops, 1),
    }
    needed = first_needed(n, tokens, target, step_1, step_n)
    out["first_token_needed_s"] = None if needed is None else round(needed, 3)
    out["gops_needed"] = None if needed is None else round(flops / needed / 1e9, 1)
    if peak_gops:
        at_peak = flops / (peak_gops * 1e9)
        out["first_token_at_peak_s"] = round(at_peak, 3)
        out["peak_ceiling"] = round(batch_ratio(n, tokens, at_peak, step_1, step_n), 2)
        # even with a batch-n step as cheap as a step of one sequence
        out["peak_ceiling_free_batching"] = round(batch_ratio(n, tokens, at_peak, step_1, step_1), 2)
    return out
