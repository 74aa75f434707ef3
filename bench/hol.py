"""`python -m bench hol`: two streams decode while a full-size document arrives; the longest token
gap of the running streams with interleaving on and off."""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from pathlib import Path

from vision.engine import Engine, ImagePart, PixelBudget

from .common import md_table
from .images import ROWS_BY_KEY, render
from .runs import StreamTrace, engine_config, image_request, same_pixels_budget, stream, warm_up_engine
from .seed_table import processor_default_hw

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
            engine_config(path, args, interleave=interleave, kv_cache_mb=0, vision_cache_mb=0), loaded=loaded
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
    return {
        "doc_pixels": args.doc_pixels,
        "stream_tokens": args.stream_tokens,
        "modes": modes,
        "gap_ratio_off_on": ratio,
        "markdown": markdown,
    }


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
