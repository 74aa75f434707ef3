"""`python -m bench batching`: 1/2/4/8 concurrent requests vs the same requests one at a time, and
the ceiling batching can reach on this machine (`bench/ceiling.py`)."""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from vision.engine import Engine, ImagePart

from . import ceiling as ceiling_math
from .common import TARGETS, md_table, verdict
from .images import render
from .runs import StreamTrace, concurrent_streams, engine_config, image_request, stream, warm_up_engine


def batching(args: argparse.Namespace, path: Path, loaded) -> dict:
    levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    top = max(levels)
    text_only = args.image_size == "none"
    size = None if text_only else tuple(int(v) for v in args.image_size.lower().split("x"))
    engine = Engine(
        engine_config(path, args, kv_cache_mb=0, vision_cache_mb=0, max_batch_size=max(8, top)),
        loaded=loaded,
    ).load()
    warm_up_engine(engine)
    counter = iter(range(1_000_000))

    def make_request():
        # A distinct picture per request: no request may reuse another's image features.
        image = None if text_only else ImagePart.from_image(render("chart", size=size, variant=next(counter)))
        return image_request(image, "What trend does this chart show?", args.tokens, task="vqa")

    def run_concurrent(n: int) -> dict:
        traces, wall = concurrent_streams(engine, [make_request() for _ in range(n)])
        return _batch_stats(traces, wall), traces

    def run_sequential(n: int) -> dict:
        requests = [make_request() for _ in range(n)]
        t0 = time.perf_counter()
        traces = [stream(engine, r) for r in requests]
        return _batch_stats(traces, time.perf_counter() - t0)

    sequential = run_sequential(top)
    print(f"[bench]   batching one-at-a-time x{top}: {sequential}")
    levels_out = {}
    for n in levels:
        stats, traces = run_concurrent(n)
        if n == top:
            top_traces = traces
        stats["throughput_ratio"] = round(stats["tokens_per_s"] / sequential["tokens_per_s"], 2)
        levels_out[n] = stats
        print(f"[bench]   batching concurrent {n}: {stats}")
    engine.shutdown()
    target = TARGETS["batch8_throughput_ratio" if text_only else "batch8_image_throughput_ratio"]
    from .machine import int8_peak_gops

    limits = _ceiling(path, top, args.tokens, target, sequential, top_traces, int8_peak_gops())
    print(f"[bench]   batching ceiling: {limits}")
    body = [
        [
            "one at a time",
            top,
            sequential["tokens_per_s"],
            sequential["mean_latency_s"],
            sequential["max_latency_s"],
            sequential["mean_ttft_s"],
            "1×",
        ]
    ]
    for n, s in levels_out.items():
        body.append(
            [
                f"{n} concurrent",
                n,
                s["tokens_per_s"],
                s["mean_latency_s"],
                s["max_latency_s"],
                s["mean_ttft_s"],
                f"**{s['throughput_ratio']}×**",
            ]
        )
    top_ratio = levels_out[top]["throughput_ratio"]
    what = "text-only prompts" if text_only else f"a distinct {args.image_size} chart image each (vqa budget)"
    markdown = "\n".join(
        [
            f"Requests: {what}, {args.tokens} output tokens, caches off. *One at a time* runs {top} such "
            "requests back to back; aggregate tokens/s = output tokens / wall time.",
            "",
            md_table(
                [
                    "mode",
                    "requests",
                    "aggregate tok/s",
                    "mean latency s",
                    "max latency s",
                    "mean TTFT s",
                    "throughput vs one at a time",
                ],
                body,
            ),
            "",
            f"Target: {top} concurrent ≥ {target}× the one-at-a-time throughput → "
            f"{top_ratio}× → {verdict(top_ratio, target)}.",
            "",
            _ceiling_markdown(top, args.tokens, target, top_ratio, limits),
        ]
    )
    return {
        "tokens": args.tokens,
        "image_size": args.image_size,
        "sequential": sequential,
        "concurrent": levels_out,
        "ceiling": limits,
        "markdown": markdown,
    }


def _ceiling(
    path: Path,
    n: int,
    tokens: int,
    target: float,
    sequential: dict,
    traces: list[StreamTrace],
    peak_gops: float | None,
) -> dict:
    """The most batching can give here (bench/ceiling.py), from this run's own measurements: the
    one-at-a-time requests' first token and decode step, the batch-n decode step once every
    concurrent stream decodes, the request's FLOPs and the CPU's int8 peak."""
    config = json.loads((path / "config.json").read_text())
    text, vision = config.get("text_config", config), config.get("vision_config")
    first = sequential["mean_ttft_s"]
    step_1 = sequential["decode_step_s"]
    step_n = _decode_step_together(traces) or step_1
    usage = traces[0].output.usage
    flops = ceiling_math.prefill_flops(text, usage.prompt_tokens)
    if usage.image_tokens and vision:
        flops += ceiling_math.vision_flops(vision, usage.image_tokens * vision["spatial_merge_size"] ** 2)
    limits = ceiling_math.ceiling(n, tokens, target, first, step_1, step_n, flops, peak_gops)
    # what the n first tokens cost together: the last of them, per request
    limits["first_token_together_s"] = round(max(t.ttft_s for t in traces) / n, 3)
    return limits


def _decode_step_together(traces: list[StreamTrace]) -> float | None:
    """Mean seconds per token of the streams once every one of them decodes (deltas after the
    last first token; a delta carrying k tokens counts as k steps)."""
    last_first = max(t.delta_times[0] for t in traces if t.delta_times)
    seconds = tokens = 0.0
    for t in traces:
        times, counts = t.delta_times, t.delta_tokens
        for a, b, k in zip(times, times[1:], counts[1:], strict=False):
            if a >= last_first:
                seconds, tokens = seconds + (b - a), tokens + k
    return seconds / tokens if tokens else None


def _ceiling_markdown(n: int, tokens: int, target: float, measured: float, c: dict) -> str:
    step_n = c[f"decode_step_{n}_s"]
    lines = [
        f"How far batching can go (`bench/ceiling.py`): vision and prefill are bound by multiply-adds, which "
        f"batching does not share, so {n} requests cost {n}× one request's {c['first_token_s']} s to its first "
        f"token ({c['flops_per_request_g']} GFLOP, {c['achieved_gops']} GOPS) however they are grouped; decode "
        f"steps: {c['decode_step_1_s']:.4g} s for one sequence, {step_n:.4g} s for {n}.",
        f"- With these steps, and first tokens as dear together as alone, the ratio can reach "
        f"**{c['schedule_ceiling']}×** (measured {measured}×). Together the {n} first tokens took "
        f"{c['first_token_together_s']} s per request: where that is below {c['first_token_s']} s (images "
        "batched in one vision pass use the cores better; a model too small to be compute-bound, like the "
        "tiny test checkpoint, shares its per-call costs) the measured ratio can pass this one.",
    ]
    if c["first_token_needed_s"] is None:
        lines.append(f"- {target}× cannot be reached with these decode steps, however cheap the first token.")
    else:
        lines.append(
            f"- {target}× needs the first token in {c['first_token_needed_s']} s per request: "
            f"{c['gops_needed']} GOPS over the request's FLOPs."
        )
    if c.get("int8_peak_gops"):
        lines.append(
            f"- This CPU's int8 multiply-add peak (register-only loop, every thread): {c['int8_peak_gops']} GOPS. "
            f"At that rate the first token takes {c['first_token_at_peak_s']} s and the ratio can reach "
            f"**{c['peak_ceiling']}×**; {c['peak_ceiling_free_batching']}× if a decode step of {n} cost no more "
            "than one of a single sequence. (Vision attention runs in bf16 at half that peak; counting it at "
            "the int8 peak makes these ceilings generous.)"
        )
    return "\n".join(lines)


def _batch_stats(traces: list[StreamTrace], wall: float) -> dict:
    tokens = sum(t.output.usage.completion_tokens for t in traces)
    latencies = [t.e2e_s for t in traces]
    return {
        "requests": len(traces),
        "wall_s": round(wall, 3),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 3),
        "mean_latency_s": round(statistics.mean(latencies), 3),
        "max_latency_s": round(max(latencies), 3),
        "mean_ttft_s": round(statistics.mean(t.ttft_s for t in traces), 3),
        # seconds per token after the first, per stream, averaged
        "decode_step_s": round(statistics.mean(_step(t) for t in traces), 6),
        "image_tokens": traces[0].output.usage.image_tokens,
    }


def _step(trace: StreamTrace) -> float:
    tokens = trace.output.usage.completion_tokens
    return (trace.e2e_s - trace.ttft_s) / (tokens - 1) if tokens > 1 else 0.0
