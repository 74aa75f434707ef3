"""`python -m bench sampling`: what choosing a token costs, and sampled decode beside greedy.

1. The sampler alone on the full 151,936-token vocabulary, batch 1 and 8: this engine's
   `choose_tokens` (torch.topk selection, then top-p on the k candidates) against the sort of the
   whole vocabulary the engine used before (`torch.sort` + cumsum per request), Qwen's defaults
   (top_k 20, top_p 0.8, temperature 0.7) and greedy. Target: <= 1 ms per request per token at 8.
2. The engine on the checkpoint, text-only, forced output length: decode s/token of one stream and
   aggregate tokens/s of 8 concurrent streams vs 8 one at a time, greedy and sampled with the
   checkpoint's generation_config.json defaults (the request sets no sampling field), the two
   modes interleaved. Targets: sampled within 5 % of greedy; 8 concurrent >= 4x one at a time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from vision.engine import Engine, EngineConfig

from .common import (
    PeakRss,
    RunInfo,
    checkpoint_tag,
    free_memory,
    machine_description,
    machine_markdown,
    md_table,
    publish,
    resolve_checkpoint,
    run_markdown,
    verdict,
)
from .runs import concurrent_streams, format_label, image_request, stream, warm_up_engine

VOCAB = 151_936
PROMPTS = (
    "Tell me a long story about a ship.",
    "Explain how a lighthouse works, in detail.",
    "Describe the water cycle.",
    "Write about the history of printing.",
    "How do bees make honey?",
    "What makes a bridge strong?",
    "Describe a busy market in the morning.",
    "Explain how a clock keeps time.",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", default="2b", help="tiny, 2b or a checkpoint folder (default 2b)")
    parser.add_argument("--dtype", default="auto", help="weight formats (default auto)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--tokens", type=int, default=32, help="output tokens per request")
    parser.add_argument("--repeats", type=int, default=2, help="greedy/sampled alternations")
    parser.add_argument("--tag")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-engine", action="store_true", help="only the sampler micro-benchmark")


def _sort_reference(logits: torch.Tensor, generators: list[torch.Generator]) -> list[int]:
    """The engine's previous sampler: softmax, full sort, cumsum, multinomial, per request."""
    out = []
    for row, g in zip(logits, generators, strict=True):
        probs = torch.softmax(row / 0.7, dim=-1)
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < 0.8
        sorted_probs = torch.where(keep, sorted_probs, torch.zeros_like(sorted_probs))
        out.append(int(order[torch.multinomial(sorted_probs, 1, generator=g)]))
    return out


def _best_ms(fn, reps: int = 40) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times) * 1e3, statistics.median(times) * 1e3


def sampler_micro() -> dict:
    from vision.engine.contract import SamplingDefaults, SamplingParams
    from vision.engine.sampling import Sampler, choose_tokens

    qwen = SamplingDefaults(do_sample=True, temperature=0.7, top_k=20, top_p=0.8)
    rows = {}
    for batch in (1, 8):
        logits = torch.randn(batch, VOCAB, generator=torch.Generator().manual_seed(batch)) * 3
        sampled = [Sampler(SamplingParams(seed=i), frozenset(), defaults=qwen) for i in range(batch)]
        greedy = [Sampler(SamplingParams(temperature=0.0), frozenset()) for _ in range(batch)]
        nucleus = [
            Sampler(SamplingParams(seed=i, top_k=0, top_p=0.9), frozenset(), defaults=qwen)
            for i in range(batch)
        ]
        gens = [torch.Generator().manual_seed(i) for i in range(batch)]
        for name, fn in (
            ("greedy (argmax)", lambda g=greedy, x=logits, b=batch: choose_tokens(x, g, [0] * b)),
            (
                "Qwen defaults: top-k 20, top-p 0.8",
                lambda s=sampled, x=logits, b=batch: choose_tokens(x, s, [0] * b),
            ),
            (
                "top-p 0.9 alone (1024 candidates)",
                lambda s=nucleus, x=logits, b=batch: choose_tokens(x, s, [0] * b),
            ),
            ("before: full sort per request", lambda x=logits, g=gens: _sort_reference(x, g)),
        ):
            best, median = _best_ms(fn, reps=5 if name.startswith("before") else 40)
            rows.setdefault(name, {})[batch] = {
                "best_ms": round(best, 3),
                "median_ms": round(median, 3),
                "per_request_ms": round(best / batch, 3),
            }
    return rows


def _sequential(engine, tokens: int, sampled: bool) -> dict:
    t0 = time.perf_counter()
    traces = [stream(engine, image_request(None, p, tokens, sampled=sampled)) for p in PROMPTS]
    wall = time.perf_counter() - t0
    per_token = [1 / t.decode_tok_s() for t in traces if t.decode_tok_s()]
    return {
        "tokens_per_s": round(sum(t.output.usage.completion_tokens for t in traces) / wall, 3),
        "wall_s": round(wall, 2),
        "median_gap_s": round(statistics.median(per_token), 4),
    }


def _concurrent(engine, tokens: int, sampled: bool) -> dict:
    requests = [image_request(None, prompt, tokens, sampled=sampled) for prompt in PROMPTS]
    traces, wall = concurrent_streams(engine, requests)
    # Steady batch-8 steps: gaps after the last request's first token, per token. A delta carries
    # several tokens when the earlier ones end inside a UTF-8 character (the text is held until
    # it is whole), which sampled random weights do often and greedy rarely: its gap spans that
    # many steps, so it counts as that many steps of gap / tokens.
    last_first = max(t.delta_times[0] for t in traces)
    gaps = [g / n for t in traces for g, n in t.token_gaps(after=last_first) for _ in range(n)]
    return {
        "tokens_per_s": round(sum(t.output.usage.completion_tokens for t in traces) / wall, 3),
        "wall_s": round(wall, 2),
        "median_step_s": round(statistics.median(gaps), 4) if gaps else None,
    }


def run(args: argparse.Namespace) -> dict:
    from vision.engine.startup import configure_threads, load_for_engine

    from .machine import measure_memory_bandwidth

    run_info = RunInfo.start(args.argv)
    threads = configure_threads(args.threads)
    bandwidth = measure_memory_bandwidth()
    micro = sampler_micro()
    print(f"[bench] sampler micro: {micro}")
    data: dict = {"kind": "sampling", "sampler_ms": micro, "threads": threads}
    md_engine = ""
    tag = checkpoint_tag(args)
    if not args.no_engine:
        path = resolve_checkpoint(args.checkpoint)
        with PeakRss() as rss:
            loaded, formats, _ = load_for_engine(
                EngineConfig(model=str(path), dtype=args.dtype, threads=args.threads)
            )
        verdict_ = loaded.format_choice.verdict() if loaded.format_choice is not None else None
        loaded_act = loaded.activation_dtype  # set for a quantized LM: bf16 or fp32 by measurement
        print(f"[bench] formats {formats}; verdict {verdict_}")
        engine = Engine(
            EngineConfig(
                model=str(path), dtype=args.dtype, threads=args.threads, kv_cache_mb=0, vision_cache_mb=0
            ),
            loaded=loaded,
        ).load()
        warm_up_engine(engine)
        results: dict = {"greedy": [], "sampled": []}
        for _ in range(args.repeats):
            for mode in ("greedy", "sampled"):
                one = _sequential(engine, args.tokens, mode == "sampled")
                eight = _concurrent(engine, args.tokens, mode == "sampled")
                entry = {
                    "one_at_a_time": one,
                    "eight_concurrent": eight,
                    "ratio": round(eight["tokens_per_s"] / one["tokens_per_s"], 2),
                }
                results[mode].append(entry)
                print(f"[bench]   {mode}: {entry}")
        engine.shutdown()
        del engine, loaded
        free_memory()

        def best(mode: str, key: str, field: str, pick=min):
            return pick(e[key][field] for e in results[mode])

        g1, s1 = (
            best("greedy", "one_at_a_time", "median_gap_s"),
            best("sampled", "one_at_a_time", "median_gap_s"),
        )
        g8, s8 = (
            best("greedy", "eight_concurrent", "median_step_s"),
            best("sampled", "eight_concurrent", "median_step_s"),
        )
        r_g = best("greedy", "eight_concurrent", "tokens_per_s", max) / best(
            "greedy", "one_at_a_time", "tokens_per_s", max
        )
        r_s = best("sampled", "eight_concurrent", "tokens_per_s", max) / best(
            "sampled", "one_at_a_time", "tokens_per_s", max
        )
        slow1, slow8 = s1 / g1 - 1, s8 / g8 - 1
        data |= {
            "formats": formats,
            "verdict": verdict_.__dict__ if verdict_ else None,
            "tokens": args.tokens,
            "engine": results,
            "peak_rss_mib": rss.peak_mib,
            "summary": {
                "greedy_s_per_token": g1,
                "sampled_s_per_token": s1,
                "greedy_batch8_step_s": g8,
                "sampled_batch8_step_s": s8,
                "sampled_overhead_batch1": round(slow1, 3),
                "sampled_overhead_batch8": round(slow8, 3),
                "batch8_ratio_greedy": round(r_g, 2),
                "batch8_ratio_sampled": round(r_s, 2),
            },
        }
        body = []
        for mode in ("greedy", "sampled"):
            for i, e in enumerate(results[mode]):
                body.append(
                    [
                        mode,
                        i + 1,
                        e["one_at_a_time"]["median_gap_s"],
                        e["one_at_a_time"]["tokens_per_s"],
                        e["eight_concurrent"]["median_step_s"],
                        e["eight_concurrent"]["tokens_per_s"],
                        f"{e['ratio']}×",
                    ]
                )
        md_engine = "\n".join(
            [
                f"### Engine: text-only, {args.tokens} tokens per request, weights {format_label(formats)}"
                + (f", activations {str(act).removeprefix('torch.')}" if (act := loaded_act) else ""),
                "",
                "*Sampled* requests set no sampling field: the engine applies the checkpoint's "
                "generation_config.json (top_k 20, top_p 0.8, temperature 0.7).",
                "",
                md_table(
                    [
                        "mode",
                        "round",
                        "1 stream: median s/token",
                        "8 one at a time: tok/s",
                        "8 concurrent: median step s",
                        "8 concurrent: tok/s",
                        "8 concurrent / one at a time",
                    ],
                    body,
                ),
                "",
                f"- Sampled vs greedy, s/token at batch 1 (best round): {s1:.4f} vs {g1:.4f} → {slow1:+.1%}; "
                f"batch-8 step {s8:.4f} vs {g8:.4f} → {slow8:+.1%}. Target within 5 %: "
                f"{'met' if max(slow1, slow8) <= 0.05 else 'MISSED'}.",
                f"- 8 concurrent vs one at a time (aggregate tok/s, best rounds): greedy **{r_g:.2f}×**, sampled "
                f"**{r_s:.2f}×**. Target ≥ 4×: {verdict(min(r_g, r_s), 4.0)}.",
            ]
        )
    run_info.finish()
    run_info.machine = machine_description(bandwidth)
    micro_rows = [
        [name, v[1]["best_ms"], v[1]["median_ms"], v[8]["best_ms"], v[8]["median_ms"], v[8]["per_request_ms"]]
        for name, v in micro.items()
    ]
    worst = micro["Qwen defaults: top-k 20, top-p 0.8"][8]["per_request_ms"]
    markdown = "\n".join(
        [
            "# Sampling: token choice cost, and sampled decode beside greedy",
            "",
            machine_markdown(run_info.machine),
            "",
            run_markdown(run_info),
            "",
            f"### Sampler alone, vocabulary {VOCAB:,}, {threads} threads (ms per call)",
            "",
            md_table(
                [
                    "sampler",
                    "batch 1 best",
                    "batch 1 median",
                    "batch 8 best",
                    "batch 8 median",
                    "batch 8 per request (best)",
                ],
                micro_rows,
            ),
            "",
            f"Target ≤ 1 ms per request per token at batch 8 (Qwen defaults): {worst} ms → "
            f"{'met' if worst <= 1.0 else 'MISSED'}.",
            "",
            md_engine,
        ]
    )
    data["run"] = run_info.to_dict()
    publish("sampling", tag, data, markdown, args.out)
    return data
