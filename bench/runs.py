"""Timed single runs: the article's recipe (transformers `generate`) and one request through our engine.

Both sides are timed the same way, on the wall clock of the calling thread: from the moment the image
and prompt are handed over (preprocessing included) to the first generated token and to the last.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import asdict, dataclass, field

import torch
from PIL import Image
from transformers.generation.streamers import BaseStreamer

from vision.engine import (
    ChatMessage,
    EngineConfig,
    EngineRequest,
    ImagePart,
    PixelBudget,
    SamplingParams,
    TextPart,
)

from .common import PeakRss

_ids = itertools.count()
PATCH_PIXELS = 16  # Qwen3-VL patch side; the grid is in patches


@dataclass
class Measurement:
    side: str  # "baseline" | "ours"
    dtype: str  # weight formats, e.g. "fp32" or "lm=int8,vision=bf16"
    pixels: str  # "processor default" | "same as baseline" | "task budget (<task>)"
    image_tokens: int
    prompt_tokens: int
    completion_tokens: int
    e2e_s: float  # hand-over -> last token
    ttft_s: float  # hand-over -> first token
    decode_tok_s: float  # (tokens - 1) / (last - first token)
    peak_rss_mib: float  # peak resident memory of the process during this run
    vision_s: float | None = None  # engine only: vision tower time
    prefill_s: float | None = None  # engine only: language-model prefill time
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


class _TokenClock(BaseStreamer):
    """generate() calls put() once with the prompt, then once per generated token."""

    def __init__(self) -> None:
        self.calls = 0
        self.token_times: list[float] = []

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls > 1:
            self.token_times.append(time.perf_counter())

    def end(self) -> None:
        pass


def baseline_generate(
    loaded, image: Image.Image, prompt: str, tokens: int
) -> tuple[Measurement, tuple[int, int]]:
    """The article's recipe: processor with its default pixel settings, fp32 `generate`, one request.

    Output length is forced with min_new_tokens = max_new_tokens (random weights may emit an end
    token anywhere). Returns the measurement and the resized image size (height, width) in pixels.
    """
    processor, model = loaded.processor, loaded.model
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    clock = _TokenClock()
    with PeakRss() as rss:
        t0 = time.perf_counter()
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                do_sample=False,
                streamer=clock,
                pad_token_id=loaded.pad_token_id,
            )
        t_end = time.perf_counter()
    grid = inputs["image_grid_thw"][0].tolist()
    merge = loaded.processor.image_processor.merge_size
    image_tokens = int(grid[0] * grid[1] * grid[2]) // (merge * merge)
    prompt_tokens = int(inputs["input_ids"].shape[1])
    generated = int(out.shape[1]) - prompt_tokens
    times = clock.token_times
    first = times[0] if times else t_end
    m = Measurement(
        side="baseline",
        dtype="fp32",
        pixels="processor default",
        image_tokens=image_tokens,
        prompt_tokens=prompt_tokens,
        completion_tokens=generated,
        e2e_s=round(t_end - t0, 3),
        ttft_s=round(first - t0, 3),
        decode_tok_s=round((len(times) - 1) / (times[-1] - first), 3) if len(times) > 1 else 0.0,
        peak_rss_mib=rss.peak_mib,
    )
    return m, (int(grid[1]) * PATCH_PIXELS, int(grid[2]) * PATCH_PIXELS)


def engine_config(path, args, **overrides) -> EngineConfig:
    """The engine configuration a bench asks for (`--dtype`, `--threads`), with `overrides`."""
    return EngineConfig(model=str(path), dtype=args.dtype, threads=args.threads, **overrides)


def same_pixels_budget(height: int, width: int) -> PixelBudget:
    """min = max = the baseline's resized area: smart_resize then lands on the baseline's grid."""
    return PixelBudget(min_pixels=height * width, max_pixels=height * width)


def image_request(
    image: ImagePart,
    prompt: str,
    tokens: int,
    *,
    task: str = "chat",
    pixels: PixelBudget | None = None,
    history: list[ChatMessage] | None = None,
    use_prefix_cache: bool = False,
    sampled: bool = False,
) -> EngineRequest:
    """Greedy unless `sampled`: then the sampling fields stay unset, so the engine applies the
    checkpoint's generation_config.json (Qwen's top_k 20, top_p 0.8, temperature 0.7)."""
    parts = (image, TextPart(prompt)) if image is not None else (TextPart(prompt),)
    return EngineRequest(
        request_id=f"bench-{next(_ids)}",
        messages=[*(history or []), ChatMessage("user", parts)],
        sampling=SamplingParams(max_tokens=tokens, ignore_eos=True, temperature=None if sampled else 0.0),
        task=task,
        pixels=pixels,
        use_prefix_cache=use_prefix_cache,
    )


@dataclass
class StreamTrace:
    """One request's stream as the caller saw it."""

    t0: float  # perf_counter at submit
    delta_times: list[float]  # perf_counter of every delta that carried tokens
    delta_tokens: list[int]  # tokens in each of those deltas
    output: object  # RequestOutput

    @property
    def t_end(self) -> float:
        return self.delta_times[-1] if self.delta_times else self.t0

    @property
    def ttft_s(self) -> float:
        return (self.delta_times[0] if self.delta_times else self.t0) - self.t0

    @property
    def e2e_s(self) -> float:
        return self.t_end - self.t0

    def decode_tok_s(self) -> float:
        tokens = sum(self.delta_tokens) - self.delta_tokens[0] if self.delta_tokens else 0
        span = self.t_end - self.delta_times[0] if self.delta_times else 0.0
        return tokens / span if span > 0 else 0.0

    def gaps(self, after: float = 0.0) -> list[float]:
        """Seconds between consecutive token-carrying deltas, for deltas arriving after `after`."""
        t = self.delta_times
        return [b - a for a, b in zip(t, t[1:], strict=False) if b > after]

    def token_gaps(self, after: float = 0.0) -> list[tuple[float, int]]:
        """(seconds, tokens) per delta after the first, for deltas arriving after `after`: the
        seconds since the previous delta and the tokens (engine steps) this delta carries."""
        t, n = self.delta_times, self.delta_tokens
        return [(b - a, k) for a, b, k in zip(t, t[1:], n[1:], strict=False) if b > after]


def stream(engine, request: EngineRequest, t0: float | None = None) -> StreamTrace:
    """Submit and consume one request in this thread, timing every delta."""
    t0 = time.perf_counter() if t0 is None else t0
    handle = engine.submit(request)
    times: list[float] = []
    counts: list[int] = []
    for delta in handle:
        if delta.token_ids:
            times.append(time.perf_counter())
            counts.append(len(delta.token_ids))
    output = handle.result()
    if output.error:
        raise RuntimeError(f"engine request failed: {output.error}")
    return StreamTrace(t0, times, counts, output)


def concurrent_streams(engine, requests: list[EngineRequest]) -> tuple[list[StreamTrace], float]:
    """Every request streamed from its own thread, all released at once: their traces, and the wall
    time from the release until the last one ends."""
    traces: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests) + 1)

    def worker(i: int) -> None:
        barrier.wait()
        traces[i] = stream(engine, requests[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return traces, time.perf_counter() - t0


def engine_measure(engine, request: EngineRequest, *, dtype: str, pixels: str) -> Measurement:
    with PeakRss() as rss:
        trace = stream(engine, request)
    out = trace.output
    return Measurement(
        side="ours",
        dtype=dtype,
        pixels=pixels,
        image_tokens=out.usage.image_tokens,
        prompt_tokens=out.usage.prompt_tokens,
        completion_tokens=out.usage.completion_tokens,
        e2e_s=round(trace.e2e_s, 3),
        ttft_s=round(trace.ttft_s, 3),
        decode_tok_s=round(trace.decode_tok_s(), 3),
        peak_rss_mib=rss.peak_mib,
        vision_s=round(out.timings.vision_s, 3),
        prefill_s=round(out.timings.prefill_s, 3),
    )


def format_label(formats: dict[str, str]) -> str:
    lm, vision = formats.get("lm", "?"), formats.get("vision", "?")
    return lm if lm == vision else f"lm={lm},vision={vision}"


def warm_up_engine(engine) -> None:
    """First calls create oneDNN primitives and touch pages: keep them out of the timed runs."""
    small = ImagePart.from_image(Image.new("RGB", (96, 96), (120, 30, 200)))
    stream(engine, image_request(small, "warm up", 3))


def warm_up_baseline(loaded) -> None:
    baseline_generate(loaded, Image.new("RGB", (96, 96), (120, 30, 200)), "warm up", 3)


def per_token_gaps(trace: StreamTrace) -> list[float]:
    """Seconds per token between a stream's deltas (a delta of n tokens spans n steps)."""
    return [g / n for g, n in trace.token_gaps() for _ in range(n)]


def paired_decode(engine, prompt: str, tokens: int, rounds: int, floor_of) -> dict:
    """Decode speed judged against the read bandwidth of the same moment, round after round.

    The shared hosts here change their read bandwidth by up to 2x within seconds (24-50 GB/s in
    one run), so one bandwidth figure taken before a stream can catch a burst the stream never
    sees. Each round: three single 512 MiB sums, one stream of `tokens` tokens, three more sums.
    The round's floor comes from the median of its six sums and is set against the median
    per-token gap of its stream (median against median: a burst or a stall moves neither). The
    verdict is the median over rounds; the best sum of the whole run against the median step is
    reported beside it. `floor_of(gbs)` gives the floor s/token.
    """
    import statistics

    from .machine import measure_memory_bandwidth

    per_round, steps = [], []
    best = 0.0
    for r in range(rounds):
        samples = [measure_memory_bandwidth(reps=1) for _ in range(3)]
        trace = stream(engine, image_request(None, f"{prompt} ({r + 1})", tokens))
        samples += [measure_memory_bandwidth(reps=1) for _ in range(3)]
        best = max(best, *samples)
        gbs = statistics.median(samples)
        steps.append(statistics.median(per_token_gaps(trace)))
        per_round.append(
            {
                "bandwidth_gbs": round(gbs, 2),
                "s_per_token": round(steps[-1], 6),
                "floor_fraction": round(floor_of(gbs) / steps[-1], 3),
                "bandwidth_samples": [round(s, 1) for s in samples],
            }
        )
    # The medians come from the unrounded steps: a tiny checkpoint's step rounds to 0 at 4 digits.
    step = statistics.median(steps)
    gbs = statistics.median(r["bandwidth_gbs"] for r in per_round)
    return {
        "rounds": per_round,
        "bandwidth_gbs": round(gbs, 2),
        "best_bandwidth_gbs": round(best, 2),
        "floor_s_per_token": round(floor_of(gbs), 4),
        "s_per_token": round(step, 6),
        "floor_fraction": round(statistics.median(r["floor_fraction"] for r in per_round), 3),
        "floor_fraction_vs_best_bandwidth": round(floor_of(best) / step, 3),
    }
