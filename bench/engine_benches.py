"""Engine-only benchmarks: prefix reuse, head-of-line blocking, batching.

Each loads the checkpoint once through the engine's own loading path (`load_for_engine`: load fp32,
convert to the configured formats) and shares that one model between the engines it compares
(`Engine(config, loaded=...)`), so the comparison is on the same weights in the same process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path

from vision.engine import ChatMessage, Engine, EngineConfig, ImagePart, PixelBudget, TextPart, kernels

from . import ceiling as ceiling_math
from .common import (
    TARGETS,
    PeakRss,
    RunInfo,
    free_memory,
    git_commit,
    machine_description,
    machine_markdown,
    md_table,
    resolve_checkpoint,
    run_markdown,
    verdict,
    write_results,
)
from .images import ROWS_BY_KEY, render
from .runs import StreamTrace, format_label, image_request, same_pixels_budget, stream, warm_up_engine
from .seed_table import processor_default_hw


def add_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    parser.add_argument("--checkpoint", default="2b", help="tiny, 2b or a checkpoint folder (default 2b)")
    parser.add_argument("--dtype", default="auto", help="weight formats (default auto: the engine's choice)")
    parser.add_argument("--threads", type=int, help="torch threads (default: physical cores)")
    parser.add_argument("--tag", help="results file suffix (default: checkpoint name)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results)")
    if name == "prefix-reuse":
        parser.add_argument("--image", default="document", choices=sorted(ROWS_BY_KEY), help="seed image")
        parser.add_argument("--tokens", type=int, default=16, help="answer length per turn")
        parser.add_argument("--repeats", type=int, default=1)
    elif name == "hol":
        parser.add_argument("--stream-tokens", type=int, default=64, help="tokens of each running stream")
        parser.add_argument(
            "--doc-pixels",
            choices=("default", "task"),
            default="default",
            help="document at the processor's default (full) resolution, or at our ocr budget",
        )
    elif name == "batching":
        parser.add_argument("--concurrency", default="1,2,4,8", help="concurrency levels (comma-separated)")
        parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
        parser.add_argument(
            "--image-size",
            default="448x336",
            help="each request's chart image size, WxH; 'none' for text-only requests",
        )


def _engine_config(path: Path, args: argparse.Namespace, **overrides) -> EngineConfig:
    return EngineConfig(model=str(path), dtype=args.dtype, threads=args.threads, **overrides)


def run(args: argparse.Namespace) -> dict:
    from vision.engine.autotune import measure_memory_bandwidth
    from vision.engine.loading import configure_threads, load_for_engine

    path = resolve_checkpoint(args.checkpoint)
    tag = args.tag or args.checkpoint.rstrip("/").split("/")[-1]
    run_info = RunInfo(command="python -m bench " + " ".join(args.argv), git_commit=git_commit())
    configure_threads(args.threads)
    bandwidth = measure_memory_bandwidth()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        loaded, formats, _ = load_for_engine(_engine_config(path, args))
        load_s = time.perf_counter() - t0
    print(f"[bench] {args.command}: formats {formats}, loaded in {load_s:.1f} s, peak {rss.peak_mib:.0f} MiB")
    bench = {"prefix-reuse": prefix_reuse, "hol": head_of_line, "batching": batching}[args.command]
    with PeakRss() as rss:
        result = bench(args, path, loaded)
    del loaded
    free_memory()
    run_info.finish()
    run_info.machine = machine_description(bandwidth)
    data = {
        "kind": args.command,
        "run": run_info.to_dict(),
        "formats": formats,
        "dtype_setting": args.dtype,
        "load_s": round(load_s, 1),
        "peak_rss_mib": rss.peak_mib,
        **result,
    }
    md = [f"# {TITLES[args.command]}", "", machine_markdown(run_info.machine), "", run_markdown(run_info), ""]
    md.append(f"Weights: `{args.dtype}` → {format_label(formats)}; peak RSS {rss.peak_mib:.0f} MiB.")
    md += ["", result.pop("markdown")]
    data.pop("markdown", None)
    markdown = "\n".join(md)
    json_path, md_path = write_results(args.command, tag, data, markdown, getattr(args, "out", None))
    print(markdown)
    print(f"[bench] wrote {json_path} and {md_path}")
    return data


TITLES = {
    "prefix-reuse": "Prefix reuse: turns 2 and 3 about the same image",
    "hol": "Head-of-line blocking: a full-size document arrives while 2 streams decode",
    "batching": "Batching: concurrent requests vs one at a time",
}


# -- prefix reuse ------------------------------------------------------------------------------------
QUESTIONS = (
    "What is this document about?",
    "What is the total amount in the table?",
    "Which line items have a quantity above ten?",
)


def prefix_reuse(args: argparse.Namespace, path: Path, loaded) -> dict:
    row = ROWS_BY_KEY[args.image]
    image = ImagePart.from_image(render(row.key))
    budget = PixelBudget.for_task(row.task)
    cached = Engine(_engine_config(path, args), loaded=loaded).load()  # production caches on
    recompute = Engine(_engine_config(path, args, kv_cache_mb=0, vision_cache_mb=0), loaded=loaded).load()
    warm_up_engine(cached)
    turns: list[dict] = []
    for rep in range(args.repeats):
        history: list[ChatMessage] = []
        # A fresh picture per repeat (different digest): repeats must not reuse each other's cache.
        picture = image if rep == 0 else ImagePart.from_image(render(row.key, variant=rep))
        for turn, question in enumerate(QUESTIONS, start=1):
            pic = picture if turn == 1 else None
            asked = history  # the conversation before this turn's question

            def request(use_cache: bool, pic=pic, question=question, asked=asked):
                return image_request(
                    pic,
                    question,
                    args.tokens,
                    task=row.task,
                    pixels=budget,
                    history=asked,
                    use_prefix_cache=use_cache,
                )

            entry: dict = {"repeat": rep, "turn": turn}
            if turn > 1:
                # Recompute first: it neither reads nor writes the cache, so order does not matter to it.
                full = stream(recompute, request(False))
                entry["recompute_ttft_s"] = round(full.ttft_s, 3)
                entry["recompute_vision_s"] = round(full.output.timings.vision_s, 3)
                entry["recompute_prefill_s"] = round(full.output.timings.prefill_s, 3)
            hit = stream(cached, request(True))
            usage = hit.output.usage
            entry |= {
                "prompt_tokens": usage.prompt_tokens,
                "image_tokens": usage.image_tokens,
                "cached_tokens": usage.cached_tokens,
                "cached_ttft_s": round(hit.ttft_s, 3),
                "cached_prefill_s": round(hit.output.timings.prefill_s, 3),
            }
            if turn > 1:
                entry["ttft_ratio"] = round(entry["recompute_ttft_s"] / hit.ttft_s, 2) if hit.ttft_s else None
            turns.append(entry)
            print(f"[bench]   prefix-reuse {entry}")
            history = [*request(True).messages, ChatMessage("assistant", (TextPart(hit.output.text),))]
    cached.shutdown()
    recompute.shutdown()
    ratios = [t["ttft_ratio"] for t in turns if t.get("ttft_ratio")]
    worst = min(ratios) if ratios else None
    body = [
        [t["repeat"], t["turn"], t["prompt_tokens"], t["image_tokens"], t["cached_tokens"], t.get("recompute_ttft_s"),
         t["cached_ttft_s"], t.get("ttft_ratio") and f"**{t['ttft_ratio']}×**"]
        for t in turns
    ]  # fmt: skip
    markdown = "\n".join(
        [
            f"Image: {row.label} {row.width}×{row.height} at our `{row.task}` budget; {args.tokens} answer tokens "
            "per turn. *Recompute* = same conversation on an engine with the prefix and vision caches off "
            "(what a server without reuse does every turn); *cached* = production engine, whose prefix "
            "cache holds the previous turn (prompt + answer).",
            "",
            md_table(
                [
                    "repeat",
                    "turn",
                    "prompt tok",
                    "image tok",
                    "cached tok",
                    "recompute TTFT s",
                    "cached TTFT s",
                    "ratio",
                ],
                body,
            ),  # fmt: skip
            "",
            f"Target: reused-prefix TTFT ≥ {TARGETS['prefix_ttft_ratio']}× lower → worst turn {worst}× → "
            f"{verdict(worst, TARGETS['prefix_ttft_ratio'])}.",
        ]
    )
    return {
        "image": row.key,
        "tokens": args.tokens,
        "turns": turns,
        "worst_ttft_ratio": worst,
        "markdown": markdown,
    }


# -- head-of-line blocking ---------------------------------------------------------------------------
STREAM_PROMPTS = ("Tell me a long story about a ship.", "Explain how a lighthouse works, in detail.")


def head_of_line(args: argparse.Namespace, path: Path, loaded) -> dict:
    row = ROWS_BY_KEY["document"]
    doc = ImagePart.from_image(render("document"))
    if args.doc_pixels == "default":
        budget = same_pixels_budget(*processor_default_hw(path, doc.image))
    else:
        budget = PixelBudget.for_task("ocr")
    modes = {}
    for interleave in (True, False):
        # No caches: each mode must encode the document itself.
        engine = Engine(
            _engine_config(path, args, interleave=interleave, kv_cache_mb=0, vision_cache_mb=0), loaded=loaded
        ).load()
        warm_up_engine(engine)
        modes["on" if interleave else "off"] = _hol_once(engine, doc, budget, args.stream_tokens, row.prompt)
        engine.shutdown()
        print(f"[bench]   hol interleave={interleave}: {modes['on' if interleave else 'off']}")
    on, off = modes["on"], modes["off"]
    body = [
        [name, m["doc_image_tokens"], m["steady_gap_s"], m["max_gap_s"], m["doc_ttft_s"], m["covered"]]
        for name, m in (("interleave on", on), ("interleave off", off))
    ]
    ratio = round(off["max_gap_s"] / on["max_gap_s"], 2) if on["max_gap_s"] else None
    markdown = "\n".join(
        [
            f"Two text streams of {args.stream_tokens} tokens decode; once both have produced tokens, a "
            f"{row.width}×{row.height} document scan arrives ({on['doc_image_tokens']} image tokens, "
            f"{args.doc_pixels} pixels). *Longest gap* = the longest wait between two tokens of either running "
            "stream from the document's arrival on; *steady gap* = median gap before it arrived.",
            "",
            md_table(
                [
                    "mode",
                    "doc image tok",
                    "steady gap s",
                    "longest gap s",
                    "doc TTFT s",
                    "doc done while streams ran",
                ],
                body,
            ),
            "",
            f"Interleaving cuts the longest stall by **{ratio}×** (off / on).",
        ]
    )
    return {"doc_pixels": args.doc_pixels, "stream_tokens": args.stream_tokens, "modes": modes,
            "gap_ratio_off_on": ratio, "markdown": markdown}  # fmt: skip


def _hol_once(engine: Engine, doc: ImagePart, budget: PixelBudget, tokens: int, prompt: str) -> dict:
    traces: list[StreamTrace | None] = [None, None]
    started = [threading.Event(), threading.Event()]

    def run_stream(i: int) -> None:
        req = image_request(None, STREAM_PROMPTS[i], tokens)
        t0 = time.perf_counter()
        handle = engine.submit(req)
        times, counts = [], []
        for delta in handle:
            if delta.token_ids:
                times.append(time.perf_counter())
                counts.append(len(delta.token_ids))
                if len(times) >= 3:
                    started[i].set()
        started[i].set()
        traces[i] = StreamTrace(t0, times, counts, handle.result())

    threads = [threading.Thread(target=run_stream, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for event in started:
        event.wait()
    doc_t0 = time.perf_counter()
    doc_trace = stream(engine, image_request(doc, prompt, 1, task="ocr", pixels=budget), t0=doc_t0)
    doc_done = doc_trace.t_end
    for t in threads:
        t.join()
    gaps_after = [g for tr in traces for g in _gaps_between(tr, doc_t0, doc_done)]
    steady = [g for tr in traces for g in _gaps_between(tr, 0.0, doc_t0)]
    covered = all(tr.t_end >= doc_done for tr in traces)
    return {
        "doc_image_tokens": doc_trace.output.usage.image_tokens,
        "doc_ttft_s": round(doc_trace.ttft_s, 3),
        "doc_vision_s": round(doc_trace.output.timings.vision_s, 3),
        "doc_prefill_s": round(doc_trace.output.timings.prefill_s, 3),
        "steady_gap_s": round(statistics.median(steady), 3) if steady else None,
        "max_gap_s": round(max(gaps_after), 3) if gaps_after else None,
        "gaps_after_arrival": len(gaps_after),
        "covered": covered,  # False: a stream ended before the document was done (gap window cut short)
    }


def _gaps_between(trace: StreamTrace, start: float, end: float) -> list[float]:
    """Gaps between consecutive deltas whose later delta falls in (start, end]; a stream still waiting
    at `end` contributes the open gap up to its next delta (the stall it actually saw)."""
    times = trace.delta_times
    gaps = []
    for a, b in zip(times, times[1:], strict=False):
        if b > start and a < end:
            gaps.append(b - max(a, start) if a < start else b - a)
    return gaps


# -- batching ------------------------------------------------------------------------------------------
def batching(args: argparse.Namespace, path: Path, loaded) -> dict:
    levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    top = max(levels)
    text_only = args.image_size == "none"
    size = None if text_only else tuple(int(v) for v in args.image_size.lower().split("x"))
    engine = Engine(
        _engine_config(path, args, kv_cache_mb=0, vision_cache_mb=0, max_batch_size=max(8, top)),
        loaded=loaded,
    ).load()
    warm_up_engine(engine)
    counter = iter(range(1_000_000))

    def make_request():
        # A distinct picture per request: no request may reuse another's image features.
        image = None if text_only else ImagePart.from_image(render("chart", size=size, variant=next(counter)))
        return image_request(image, "What trend does this chart show?", args.tokens, task="vqa")

    def run_concurrent(n: int) -> dict:
        requests = [make_request() for _ in range(n)]
        traces: list[StreamTrace | None] = [None] * n
        barrier = threading.Barrier(n + 1)

        def worker(i: int) -> None:
            barrier.wait()
            traces[i] = stream(engine, requests[i])

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        barrier.wait()
        t0 = time.perf_counter()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
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
    limits = _ceiling(path, top, args.tokens, target, sequential, top_traces, kernels.int8_peak_gops())
    print(f"[bench]   batching ceiling: {limits}")
    body = [["one at a time", top, sequential["tokens_per_s"], sequential["mean_latency_s"],
             sequential["max_latency_s"], sequential["mean_ttft_s"], "1×"]]  # fmt: skip
    for n, s in levels_out.items():
        body.append([f"{n} concurrent", n, s["tokens_per_s"], s["mean_latency_s"], s["max_latency_s"], s["mean_ttft_s"],
                     f"**{s['throughput_ratio']}×**"])  # fmt: skip
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
            ),  # fmt: skip
            "",
            f"Target: {top} concurrent ≥ {target}× the one-at-a-time throughput → "
            f"{top_ratio}× → {verdict(top_ratio, target)}.",
            "",
            _ceiling_markdown(top, args.tokens, target, top_ratio, limits),
        ]
    )
    return {"tokens": args.tokens, "image_size": args.image_size, "sequential": sequential, "concurrent": levels_out,
            "ceiling": limits, "markdown": markdown}  # fmt: skip


def _ceiling(path: Path, n: int, tokens: int, target: float, sequential: dict, traces: list[StreamTrace],
             peak_gops: float | None) -> dict:  # fmt: skip
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
